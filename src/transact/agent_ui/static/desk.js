// The calls view: the agent's current call, its start menu, the card filling in live,
// a payment link's journey, the outcome; the live calls, claiming, link codes.
//
// The page only ever holds counts, verdicts, brand, BIN and last 4: the API and the push
// channel never send more, and nothing here would show it if they did.

import { $, confirmDialog, el, randomId, setText, show, sleep, when } from "./dom.js";
import {
  BRANDS,
  FIELD_NAMES,
  METHOD_NAMES,
  STATUS_NAMES,
  formatMoney,
  friendly,
  parseAmount,
} from "./text.js";
import { destinationLabel, expectedDigits, linkSteps, outcomeView } from "./views.js";
import { Handover } from "./handover.js";
import { Transcript } from "./transcript.js";

const OPEN = new Set(["capturing", "ready"]);
const FINAL = new Set([
  "authorized",
  "declined",
  "failed",
  "cancelled",
  "expired",
  "refunded",
  "partially_refunded",
  "voided",
]);
const LINK_CHANNELS = { link_sms: "sms", link_email: "email", link_chat: "chat" };
const LINK_OPEN = new Set(["active", "opened"]);
// Link and message events come by push; this slow look is only a safety net.
const LINK_POLL_MS = 15_000;
const EARLY_KEYS_MS = 20_000;
// Capture learns of a call's agent from the bus, a moment after the page may: opening a
// payment right after the call appeared is retried for this long.
const PROJECTION_RETRY_MS = 3000;
// An open capture with no news for this long is fetched again: a push lost on the way (a
// reconnect, an overtaken reply) must not leave the agent looking at an old state.
const CAPTURE_RECHECK_MS = 8000;
const WATCHED = new Set([...OPEN, "submitted"]); // a capture, or a payment awaiting its outcome

export class Desk {
  constructor(ctx) {
    this.ctx = ctx;
    this.calls = new Map();
    this.callId = null;
    this.payment = null;
    this.link = null;
    this.linkTimer = null;
    this.codeTimer = null;
    this.refetchTimer = null;
    this.recheckTimer = null;
    this.earlyTimer = null;
    this.method = null;
    this.wire();
    this.handover = new Handover(this); // send the call to a payment line and back
    this.transcript = new Transcript(this); // what the customer said, when transcribed
  }

  get me() {
    return this.ctx.state.me;
  }

  wire() {
    $("start").addEventListener("submit", (event) => {
      event.preventDefault();
      this.start();
    });
    $("claim").addEventListener("submit", (event) => {
      event.preventDefault();
      this.claimByReference();
    });
    $("link-code").addEventListener("click", () => this.linkCode());
    $("capture-submit").addEventListener("click", () => this.submit());
    $("capture-cancel").addEventListener("click", () => this.cancel());
    $("capture-input").addEventListener("click", () => this.switchInput());
    $("capture-to-link").addEventListener("click", () => this.offerSwitch());
    $("switch-channel").addEventListener("change", () => this.renderSwitch());
    $("switch").addEventListener("submit", (event) => {
      event.preventDefault();
      this.switchToLink();
    });
    $("outcome-again").addEventListener("click", () => this.again());
    $("link-resend").addEventListener("click", () => this.resendLink());
    $("link-cancel").addEventListener("click", () => this.cancelLink());
    $("link-submit").addEventListener("click", () => this.submitLinkPayment());
    $("link-copy").addEventListener("click", () => this.copyLink());
  }

  reset() {
    this.calls.clear();
    this.callId = null;
    this.transcript.open(null);
    this.payment = null;
    this.stopLink();
    this.link = null;
    clearInterval(this.codeTimer);
    show("link-code-shown", false);
    this.render();
  }

  // --- what is true now (at sign-in, after a push `reset`) ------------------------------

  async refetch() {
    await this.handover.loadLines();
    await this.loadCalls();
    if (this.payment) await this.reloadPayment();
    else if (this.callId) await this.findOpenPayment();
    if (this.link) await this.pollLink();
    await this.transcript.load(); // what was said while the page was away
  }

  async loadCalls() {
    const previous = this.calls.get(this.callId);
    try {
      const calls = await this.ctx.api.get("/api/v1/calls?limit=200");
      this.calls = new Map(calls.map((call) => [call.id, call]));
    } catch (problem) {
      this.ctx.error(friendly(problem));
      return;
    }
    // The list holds live calls only; the call whose payment is on screen stays there.
    if (previous && !this.calls.has(previous.id)) {
      this.calls.set(previous.id, { ...previous, state: "ended", gone: true });
    }
    const current = this.calls.get(this.callId);
    const keep = current && !current.gone && current.agent_id === this.me.id;
    if (!keep && !this.payment && !this.link) {
      const mine = [...this.calls.values()].filter((c) => c.agent_id === this.me.id && !c.gone);
      mine.sort((a, b) => (b.started_at ?? "").localeCompare(a.started_at ?? ""));
      this.choose(mine[0]?.id);
    }
    this.render();
  }

  // A payment already open on the call (opened in another tab, or before a reload).
  async findOpenPayment() {
    try {
      const query = new URLSearchParams({ call_id: this.callId, limit: "1" });
      const [latest] = await this.ctx.api.get(`/api/v1/payments?${query}`);
      if (latest && (OPEN.has(latest.status) || latest.status === "submitted")) {
        this.payment = latest;
        this.render();
      }
    } catch (problem) {
      this.ctx.error(friendly(problem));
    }
  }

  choose(callId) {
    if (callId === this.callId) return;
    this.callId = callId ?? null;
    this.payment = null;
    show("early-keys", false);
    this.transcript.open(this.callId);
    if (this.callId) this.findOpenPayment();
  }

  // --- push events -----------------------------------------------------------------------

  async event(topic, data) {
    const handler = {
      "call.started": () => this.loadCalls(),
      "call.assigned": () => this.assigned(data),
      "call.ended": () => this.ended(data),
      "call.secure_mode": () => this.secureMode(data),
      "call.keys_outside_capture": () => this.earlyKeys(data),
      "capture.started": () => this.captureStarted(data),
      "capture.progress": () => this.progress(data),
      "capture.input_changed": () => this.ours(data.capture_id) && this.reloadPayment(),
      "voice.transcript": () =>
        data.source === "call" ? this.transcript.pushed(data) : this.heard(data),
      "capture.completed": () => this.ours(data.capture_id) && this.reloadPayment(),
      "capture.cancelled": () => this.ours(data.capture_id) && this.reloadPayment(),
      "payment.authorized": () => this.outcome(data),
      "payment.declined": () => this.outcome(data),
      "payment.failed": () => this.outcome(data),
      "payment.pending": () => this.outcome(data),
      "ivr.step": () => this.handover.step(data),
    }[topic];
    if (handler) await handler();
    // Pay by link: the link's own events, and its message's delivery (`about` the link).
    const linkId = topic.startsWith("link.")
      ? data.link_id
      : topic.startsWith("message.")
        ? data.about
        : null;
    if (linkId && this.link?.id === linkId) await this.pollLink();
  }

  ours(captureId) {
    return this.payment !== null && this.payment.id === captureId;
  }

  async assigned(data) {
    if (data.agent_id === this.me.id) {
      try {
        const call = await this.ctx.api.get(`/api/v1/calls/${encodeURIComponent(data.call_id)}`);
        this.calls.set(call.id, call);
        const busy = this.payment && !FINAL.has(this.payment.status);
        if (!busy) {
          this.choose(call.id);
          this.ctx.notify(`Call ${call.reference} is now yours.`);
        }
      } catch (problem) {
        this.ctx.error(friendly(problem));
      }
    } else if (data.previous_agent_id === this.me.id && data.call_id === this.callId) {
      this.ctx.notify("Your call was moved to another agent.");
      this.choose(null);
    }
    await this.loadCalls();
  }

  ended(data) {
    const call = this.calls.get(data.call_id);
    if (call) call.state = "ended";
    if (data.call_id === this.callId) this.ctx.notify("The call has ended.");
    this.render();
  }

  secureMode(data) {
    if (data.call_id !== this.callId) return;
    setText(
      "secure-mode",
      data.input === "speech" ? "Secure mode: the customer's voice is masked" : "Secure mode: keys are masked",
    );
    show("secure-mode", Boolean(data.on));
  }

  // What the customer said during a spoken capture: labels only, never a digit.
  heard(data) {
    if (!this.ours(data.capture_id) && data.call_id !== this.callId) return;
    setText("capture-heard", `Heard: ${data.text}`);
    show("capture-heard", true);
  }

  // The customer keyed before a payment was open: nothing was recorded. Say so plainly.
  earlyKeys(data) {
    if (data.call_id !== this.callId) return;
    const how = data.source === "speech" ? "read out numbers" : "pressed keys";
    setText(
      "early-keys",
      `The customer ${how} before the payment was ready. Nothing was recorded. ` +
        "Ask them to wait until you start the payment, then to enter the card again.",
    );
    show("early-keys");
    clearTimeout(this.earlyTimer);
    this.earlyTimer = setTimeout(() => show("early-keys", false), EARLY_KEYS_MS);
  }

  async captureStarted(data) {
    if (data.channel !== "phone" || data.call_id !== this.callId) return;
    if (this.payment && this.payment.id === data.capture_id) return;
    if (this.payment && !FINAL.has(this.payment.status)) return;
    this.payment = { id: data.capture_id };
    await this.reloadPayment();
  }

  // Live dots: the count comes with each key; verdicts and attempts are refetched when
  // something other than a key happened (a field done, rejected, cleared or re-asked).
  progress(data) {
    if (!this.ours(data.capture_id)) return;
    const field = this.payment.fields?.find((f) => f.name === data.field);
    if (field) {
      field.digits = data.digits;
      if (data.event === "key" && field.status === "pending") field.status = "keying";
      if (data.valid === false) field.reason = data.reason;
      if (data.complete && data.valid) field.status = "valid";
    }
    if (data.brand) this.payment.liveBrand = data.brand;
    if (data.last4) this.payment.liveLast4 = data.last4;
    this.renderCapture();
    if (data.event !== "key") this.soonReload();
  }

  // Each render of an open capture pushes the check back: it runs only when nothing has
  // happened for CAPTURE_RECHECK_MS, and stops once the payment is no longer open.
  recheckWhenQuiet() {
    clearTimeout(this.recheckTimer);
    if (!this.payment || !WATCHED.has(this.payment.status ?? "capturing")) return;
    const id = this.payment.id;
    this.recheckTimer = setTimeout(() => {
      if (this.payment?.id === id) this.reloadPayment();
    }, CAPTURE_RECHECK_MS);
  }

  soonReload() {
    clearTimeout(this.refetchTimer);
    this.refetchTimer = setTimeout(() => this.reloadPayment(), 60);
  }

  async outcome(data) {
    if (this.payment?.id === data.payment_id) await this.reloadPayment();
    if (this.link?.payment_id === data.payment_id) await this.pollLink();
  }

  async reloadPayment() {
    if (!this.payment) return;
    try {
      const fresh = await this.ctx.api.get(`/api/v1/payments/${encodeURIComponent(this.payment.id)}`);
      this.payment = fresh;
    } catch (problem) {
      setText("capture-message", friendly(problem));
    }
    this.render();
  }

  // --- the start menu -----------------------------------------------------------------

  offered() {
    const { settings, linksAvailable } = this.ctx.state;
    return settings.methods.filter((method) => {
      if (method === "speech") return this.ctx.state.speechAvailable;
      if (method in LINK_CHANNELS) return linksAvailable;
      return true;
    });
  }

  renderStart() {
    const { settings } = this.ctx.state;
    const offered = this.offered();
    if (!offered.includes(this.method)) {
      this.method = offered.includes(settings.default_method) ? settings.default_method : offered[0];
    }
    const methods = $("methods");
    if (methods.dataset.offered !== offered.join()) {
      methods.dataset.offered = offered.join();
      methods.replaceChildren(
        ...offered.map((method) => {
          const input = el("input", {
            type: "radio",
            name: "method",
            id: `method-${method}`,
            value: method,
          });
          input.addEventListener("change", () => {
            this.method = method;
            this.renderStartFields();
          });
          return el("label", { for: `method-${method}`, class: "choice" }, input, METHOD_NAMES[method]);
        }),
      );
      const currency = $("pay-currency");
      currency.replaceChildren(
        ...settings.currencies.map((code) => el("option", { value: code }, code)),
      );
      currency.value = settings.default_currency;
    }
    $(`method-${this.method}`).checked = true;
    this.renderStartFields();
  }

  renderStartFields() {
    const channel = LINK_CHANNELS[this.method];
    show("link-fields", Boolean(channel));
    show("link-to", channel && channel !== "chat");
    $("link-to").labels[0].hidden = !channel || channel === "chat";
    setText("link-to-label", destinationLabel(channel));
    $("link-to").type = channel === "email" ? "email" : "tel";
    setText(
      "start-submit",
      !channel ? "Take payment" : channel === "chat" ? "Create link" : "Send link",
    );
  }

  readStart() {
    const currency = $("pay-currency").value;
    const exponent = this.ctx.state.settings.exponents[currency] ?? 2;
    const amount = parseAmount($("pay-amount").value, exponent);
    const reference = $("pay-reference").value.trim();
    if (amount === null) {
      return { problem: `Enter the amount in ${currency}, for example 12.50.`, focus: "pay-amount" };
    }
    if (!reference) {
      return { problem: "Enter a reference (an invoice or order number).", focus: "pay-reference" };
    }
    return { body: { amount, currency, reference } };
  }

  async start() {
    const read = this.readStart();
    setText("start-message", read.problem ?? "");
    if (read.problem) {
      $(read.focus).focus();
      return;
    }
    $("start-submit").disabled = true;
    try {
      if (LINK_CHANNELS[this.method]) await this.sendLink(read.body);
      else await this.openPayment(read.body);
      $("pay-amount").value = "";
      $("pay-reference").value = "";
    } catch (problem) {
      setText("start-message", friendly(problem));
    } finally {
      $("start-submit").disabled = false;
    }
  }

  async openPayment(body) {
    if (this.method === "speech") body = { ...body, input: "speech" };
    const key = randomId();
    const path = `/api/v1/calls/${encodeURIComponent(this.callId)}/payments`;
    const deadline = Date.now() + PROJECTION_RETRY_MS;
    for (;;) {
      try {
        const created = await this.ctx.api.postOnce(path, body, key);
        // On a busy line the push (`capture.started`, then each key) can overtake this
        // reply: the page may already show a newer state of this payment, which the
        // reply, as it was when the payment opened, must not replace.
        if (this.payment?.id !== created.id) this.payment = created;
        this.soonReload();
        break;
      } catch (problem) {
        const lagging = ["call_not_found", "not_your_call"].includes(problem.code);
        if (!lagging || Date.now() > deadline) throw problem;
        await sleep(150);
      }
    }
    setText("capture-message", "");
    show("capture-heard", false);
    this.render();
    $("capture-title").focus();
  }

  async again() {
    this.payment = null;
    this.stopLink();
    this.link = null;
    const call = this.calls.get(this.callId);
    if (call?.state === "live") {
      this.render();
      $("pay-amount").focus();
    } else {
      await this.loadCalls(); // the call has ended: on to the next one, if any
    }
  }

  // --- the capture ----------------------------------------------------------------------

  async submit() {
    $("capture-submit").disabled = true;
    try {
      this.payment = await this.ctx.api.post(
        `/api/v1/payments/${encodeURIComponent(this.payment.id)}/submit`,
      );
      setText("capture-message", "");
    } catch (problem) {
      setText("capture-message", friendly(problem));
    }
    this.render();
    this.soonReload(); // the push may have overtaken the reply: fetch what is true now
    // The outcome comes by push; ask once more in case this socket was reconnecting.
    setTimeout(() => this.payment?.status === "submitted" && this.reloadPayment(), 8000);
  }

  async cancel() {
    const sure = await confirmDialog(
      "Cancel this payment?",
      "The card details keyed so far are wiped. The customer is not charged.",
      "Cancel payment",
      "Keep going",
    );
    if (!sure) return;
    try {
      this.payment = await this.ctx.api.post(
        `/api/v1/payments/${encodeURIComponent(this.payment.id)}/cancel`,
      );
    } catch (problem) {
      setText("capture-message", friendly(problem));
    }
    this.render();
    this.soonReload(); // the push may have overtaken the reply: fetch what is true now
  }

  // Keypad <-> speech in the middle of a capture: the fields already valid are kept.
  async switchInput() {
    const mode = this.payment.input === "speech" ? "keypad" : "speech";
    try {
      this.payment = await this.ctx.api.post(
        `/api/v1/payments/${encodeURIComponent(this.payment.id)}/input`,
        { mode },
      );
      setText(
        "capture-message",
        mode === "speech"
          ? "The customer can now say the rest of the card. You will not hear them."
          : "The customer can now key the rest of the card.",
      );
    } catch (problem) {
      setText("capture-message", friendly(problem));
    }
    this.render();
    this.soonReload(); // the push may have overtaken the reply: fetch what is true now
  }

  async recapture(field) {
    try {
      this.payment = await this.ctx.api.post(
        `/api/v1/payments/${encodeURIComponent(this.payment.id)}/recapture`,
        { field },
      );
      const how = this.payment.input === "speech" ? "say" : "key";
      setText("capture-message", `Ask the customer to ${how} the ${FIELD_NAMES[field].toLowerCase()} again.`);
    } catch (problem) {
      setText("capture-message", friendly(problem));
    }
    this.render();
    this.soonReload(); // the push may have overtaken the reply: fetch what is true now
  }

  // The same payment as a link: remote takes the capture over, card capture wipes it.
  offerSwitch() {
    const channels = this.offered().filter((method) => method in LINK_CHANNELS);
    $("switch-channel").replaceChildren(
      ...channels.map((method) => el("option", { value: LINK_CHANNELS[method] }, METHOD_NAMES[method])),
    );
    const open = $("switch").hidden;
    show("switch", open);
    $("capture-to-link").setAttribute("aria-expanded", String(open));
    this.renderSwitch();
    if (open) $("switch-channel").focus();
  }

  renderSwitch() {
    const channel = $("switch-channel").value;
    show("switch-to", channel !== "chat");
    $("switch-to").labels[0].hidden = channel === "chat";
    setText("switch-to-label", destinationLabel(channel));
  }

  async switchToLink() {
    const channel = $("switch-channel").value;
    const request = { channel, from_payment_id: this.payment.id };
    if (channel !== "chat") request.to = $("switch-to").value.trim();
    try {
      this.link = await this.ctx.api.postOnce("/api/v1/payment-links", request);
      show("switch", false);
      $("switch-to").value = "";
      this.render();
      this.pollLinkSoon();
    } catch (problem) {
      setText("capture-message", friendly(problem));
    }
  }

  // --- payment links ----------------------------------------------------------------------

  async sendLink(body) {
    const channel = LINK_CHANNELS[this.method];
    const minutes = Number.parseInt($("link-expiry").value, 10);
    const request = { ...body, channel };
    if (channel !== "chat") request.to = $("link-to").value.trim();
    if (Number.isFinite(minutes) && minutes > 0) request.expires_in = minutes * 60;
    this.link = await this.ctx.api.postOnce("/api/v1/payment-links", request);
    $("link-to").value = "";
    this.render();
    this.pollLinkSoon();
  }

  pollLinkSoon() {
    clearTimeout(this.linkTimer);
    if (this.link && !this.linkFinal()) {
      this.linkTimer = setTimeout(() => this.pollLink(), LINK_POLL_MS);
    }
  }

  linkFinal() {
    return !LINK_OPEN.has(this.link.status) && !(this.link.attempt && !FINAL.has(this.link.attempt.status));
  }

  stopLink() {
    clearTimeout(this.linkTimer);
  }

  async pollLink() {
    if (!this.link) return;
    try {
      const url = this.link.url;
      const path = `/api/v1/payment-links/${encodeURIComponent(this.link.id)}`;
      this.link = { ...(await this.ctx.api.get(path)), url };
      if (this.link.payment_id && this.link.status === "completed") {
        this.payment = await this.ctx.api.get(`/api/v1/payments/${encodeURIComponent(this.link.payment_id)}`);
      }
    } catch (problem) {
      setText("link-message", friendly(problem));
    }
    this.render();
    this.pollLinkSoon();
  }

  async resendLink() {
    try {
      this.link = await this.ctx.api.post(`/api/v1/payment-links/${encodeURIComponent(this.link.id)}/resend`);
      setText("link-message", "A new link was sent; the old one no longer works.");
    } catch (problem) {
      setText("link-message", friendly(problem));
    }
    this.render();
    this.pollLinkSoon();
  }

  async cancelLink() {
    const sure = await confirmDialog(
      "Cancel this link?",
      "The customer will not be able to pay with it.",
      "Cancel link",
      "Keep it",
    );
    if (!sure) return;
    try {
      this.link = await this.ctx.api.post(`/api/v1/payment-links/${encodeURIComponent(this.link.id)}/cancel`);
    } catch (problem) {
      setText("link-message", friendly(problem));
    }
    this.render();
  }

  async submitLinkPayment() {
    const id = this.link.attempt?.payment_id;
    if (!id) return;
    try {
      await this.ctx.api.post(`/api/v1/payments/${encodeURIComponent(id)}/submit`);
    } catch (problem) {
      setText("link-message", friendly(problem));
    }
    await this.pollLink();
  }

  async copyLink() {
    try {
      await navigator.clipboard.writeText($("link-url").value);
      setText("link-message", "Link copied.");
    } catch {
      $("link-url").select();
      setText("link-message", "Press Ctrl+C to copy the selected link.");
    }
  }

  // --- live calls, claiming, link codes ------------------------------------------------------

  async claimByReference() {
    const reference = $("claim-reference").value.trim();
    if (!reference) {
      setText("claim-message", "Enter the reference the customer or the IVR gave you.");
      return;
    }
    try {
      const call = await this.ctx.api.post("/api/v1/calls/claim", { reference });
      this.take(call);
      $("claim-reference").value = "";
      setText("claim-message", "");
      this.ctx.notify(`Call ${call.reference} is now yours.`);
    } catch (problem) {
      setText("claim-message", friendly(problem));
    }
  }

  async claim(call) {
    try {
      this.take(await this.ctx.api.post(`/api/v1/calls/${encodeURIComponent(call.id)}/claim`));
      setText("claim-message", "");
    } catch (problem) {
      setText("claim-message", friendly(problem));
    }
  }

  // A supervisor moves a call another agent holds to themselves (a transfer).
  async takeOver(call) {
    const holder = this.ctx.username(call.agent_id);
    const sure = await confirmDialog(
      `Take over call ${call.reference}?`,
      `${holder} holds it now. A payment open on it moves to you.`,
      "Take over",
      "Leave it",
    );
    if (!sure) return;
    try {
      const path = `/api/v1/calls/${encodeURIComponent(call.id)}/assign`;
      this.take(await this.ctx.api.post(path, { agent_id: this.me.id }));
      setText("claim-message", "");
    } catch (problem) {
      setText("claim-message", friendly(problem));
    }
  }

  take(call) {
    this.calls.set(call.id, call);
    this.choose(call.id);
    this.render();
  }

  async linkCode() {
    try {
      const issued = await this.ctx.api.post("/api/v1/calls/link-codes");
      setText("link-code-value", issued.code.split("").join(" "));
      show("link-code-shown");
      const ends = Date.now() + issued.expires_in * 1000;
      const tick = () => {
        const left = Math.max(0, Math.round((ends - Date.now()) / 1000));
        setText("link-code-left", `${left} s`);
        if (!left) {
          clearInterval(this.codeTimer);
          show("link-code-shown", false);
        }
      };
      clearInterval(this.codeTimer);
      tick();
      this.codeTimer = setInterval(tick, 1000);
    } catch (problem) {
      setText("claim-message", friendly(problem));
    }
  }

  // --- drawing ------------------------------------------------------------------------------

  render() {
    this.renderCalls();
    const call = this.calls.get(this.callId);
    show("no-call", !call && !this.payment);
    show("call", Boolean(call || this.payment));
    if (call) {
      setText("call-reference", call.reference);
      setText("call-from", call.from ?? "unknown");
      setText("call-started", when(call.started_at));
      setText("call-state", call.state === "live" ? "On the line" : "Ended");
    }
    const phase = this.phase(call);
    this.handover.render(phase === "start");
    show("start", phase === "start" && !this.handover.away(this.callId));
    show("capture", phase === "capture");
    show("link", phase === "link");
    show("outcome", phase === "outcome");
    if (phase === "start") this.renderStart();
    if (phase === "capture") this.renderCapture();
    if (phase === "link") this.renderLink();
    if (phase === "outcome") this.renderOutcome();
  }

  phase(call) {
    if (this.link && !(this.link.status === "completed" && this.payment && FINAL.has(this.payment.status))) {
      return "link";
    }
    if (this.payment && FINAL.has(this.payment.status)) return "outcome";
    if (this.payment) return "capture";
    return call && call.state === "live" && call.agent_id === this.me.id ? "start" : "none";
  }

  renderCapture() {
    const payment = this.payment;
    this.recheckWhenQuiet();
    if (!payment.fields) return;
    const exponent = this.ctx.state.settings.exponents[payment.currency] ?? 2;
    const money = formatMoney(payment.amount, payment.currency, exponent);
    setText("capture-summary", `· ${money} · ${payment.reference}`);
    const speech = payment.input === "speech";
    const statusText = {
      capturing: speech
        ? "The customer is saying the card details. You hear none of it."
        : "The customer is keying the card on their phone.",
      ready: "All fields are valid. Submit when the customer is ready.",
      submitted: "Sending to the payment provider…",
    }[payment.status] ?? STATUS_NAMES[payment.status] ?? payment.status;
    setText("capture-status", statusText);
    const open = OPEN.has(payment.status);
    $("field-rows").replaceChildren(...payment.fields.map((field) => this.fieldRow(field, open)));
    $("capture-submit").disabled = payment.status !== "ready";
    $("capture-cancel").disabled = !open;
    const links = this.offered().some((method) => method in LINK_CHANNELS);
    show("capture-to-link", open && links);
    const switchable = open && payment.channel === "phone" && this.ctx.state.speechAvailable;
    show("capture-input", switchable);
    setText("capture-input", speech ? "Switch to keypad" : "Switch to speech");
    if (!open) show("switch", false);
  }

  fieldRow(field, open) {
    const payment = this.payment;
    const brand = payment.card?.brand ?? payment.liveBrand;
    const last4 = payment.card?.last4 ?? payment.liveLast4;
    const expected = expectedDigits(field.name, brand);
    const dots = el(
      "span",
      { class: "dots", role: "img", "aria-label": `${field.digits} digits keyed` },
      ...Array.from({ length: Math.max(expected, field.digits) }, (_, i) =>
        el("span", { class: i < field.digits ? "dot on" : "dot" }, i < field.digits ? "●" : "○"),
      ),
    );
    const verdict = {
      pending: "Waiting",
      keying: field.reason ? `Not valid: ${field.reason}` : "Keying…",
      valid: "Valid",
      failed: "Too many tries",
      rejected: `Not valid: ${field.reason ?? ""}`,
    }[field.status] ?? field.status;
    const check = [verdict];
    if (field.name === "pan" && brand) check.unshift(BRANDS[brand] ?? brand);
    if (field.name === "pan" && last4) check.unshift(`•••• ${last4}`);
    const left = Math.max(0, (payment.max_attempts ?? 3) - field.attempts);
    const again = el(
      "button",
      { type: "button", class: "quiet small", "data-field": field.name },
      "Ask again",
    );
    again.disabled = !open || field.status === "pending";
    again.setAttribute("aria-label", `Ask for the ${FIELD_NAMES[field.name].toLowerCase()} again`);
    again.addEventListener("click", () => this.recapture(field.name));
    const state = field.status === "valid" ? "valid" : field.reason ? "invalid" : field.status;
    return el(
      "tr",
      { id: `field-${field.name}`, "data-state": state, "data-digits": field.digits },
      el("th", { scope: "row" }, FIELD_NAMES[field.name] ?? field.name),
      el("td", {}, dots),
      el("td", { class: "verdict" }, check.join(" · ")),
      el("td", { class: "left" }, String(left)),
      el("td", {}, again),
    );
  }

  renderOutcome() {
    const payment = this.payment;
    const exponent = this.ctx.state.settings.exponents[payment.currency] ?? 2;
    const [title, text, detail] = outcomeView(payment, exponent);
    setText("outcome-title", title);
    setText("outcome-text", text);
    setText("outcome-detail", detail);
    $("outcome").dataset.status = payment.status;
    const live = this.calls.get(this.callId)?.state === "live";
    setText("outcome-again", live ? "Take another payment" : "Done");
  }

  renderLink() {
    const link = this.link;
    const exponent = this.ctx.state.settings.exponents[link.currency] ?? 2;
    setText("link-summary", `· ${formatMoney(link.amount, link.currency, exponent)} · ${link.reference}`);
    const steps = linkSteps(link);
    $("link-steps").replaceChildren(
      ...steps.map(([name, done, current]) =>
        el("li", { class: done ? "done" : current ? "current" : "", "data-step": name.toLowerCase() }, name),
      ),
    );
    $("link-steps").dataset.status = link.status;
    show("link-url-row", Boolean(link.url) && link.channel === "chat" && LINK_OPEN.has(link.status));
    if (link.url) $("link-url").value = link.url;
    show("link-submit", link.attempt?.status === "ready");
    show("link-resend", LINK_OPEN.has(link.status) && link.channel !== "chat");
    show("link-cancel", LINK_OPEN.has(link.status));
  }

  renderCalls() {
    const supervises = this.ctx.state.supervises;
    const live = [...this.calls.values()]
      .filter((call) => call.state === "live" && !call.gone)
      .sort((a, b) => (b.started_at ?? "").localeCompare(a.started_at ?? ""));
    $("call-list").replaceChildren(
      ...live.map((call) => {
        const mine = call.agent_id === this.me.id;
        const holder = mine ? "you" : call.agent_id ? this.ctx.username(call.agent_id) : "nobody yet";
        const actions = [];
        if (mine && call.id !== this.callId) {
          actions.push(
            el("button", { type: "button", class: "quiet small", onclick: () => this.take(call) }, "Show"),
          );
        }
        if (!mine && !call.agent_id) {
          actions.push(
            el("button", { type: "button", class: "quiet small", onclick: () => this.claim(call) }, "Claim"),
          );
        } else if (!mine && supervises) {
          const takeOver = () => this.takeOver(call);
          actions.push(
            el("button", { type: "button", class: "quiet small", onclick: takeOver }, "Take over"),
          );
        }
        return el(
          "li",
          { "data-call": call.id, class: call.id === this.callId ? "current" : "" },
          el("strong", {}, call.reference),
          ` · ${when(call.started_at)} · held by ${holder} `,
          ...actions,
        );
      }),
    );
    show("call-list-empty", live.length === 0);
  }
}
