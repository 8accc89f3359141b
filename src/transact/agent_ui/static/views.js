// What the screen says about a payment, a field and a link: pure functions of the API's
// views (counts, verdicts, brand, last 4), no DOM.

import { BRANDS, declineReason, formatMoney } from "./text.js";

export function destinationLabel(channel) {
  return channel === "email" ? "Customer's e-mail address" : "Customer's mobile number";
}

// How many dots a field shows before any digit: the brand decides the card's length.
export function expectedDigits(name, brand) {
  if (name === "pan") return { amex: 15, diners: 14 }[brand] ?? 16;
  if (name === "expiry") return 4;
  if (name === "cvv") return brand === "amex" ? 4 : 3;
  return 0;
}

export function maskedCard(card) {
  return card ? `${BRANDS[card.brand] ?? card.brand} •••• ${card.last4}` : "";
}

// [title, what happened and what to do, the details] of a payment that has ended.
export function outcomeView(payment, exponent) {
  const money = formatMoney(payment.amount, payment.currency, exponent);
  const outcome = payment.outcome ?? {};
  const card = maskedCard(payment.card);
  const provider = outcome.connector ?? "–";
  const views = {
    authorized: [
      "Approved",
      `${money} was approved${card ? ` on ${card}` : ""}.`,
      `Provider reference ${outcome.psp_reference ?? "–"} (${provider})`,
    ],
    declined: [
      "Declined",
      declineReason(outcome.decline_code),
      `Decline code ${outcome.decline_code ?? "–"} (${provider})`,
    ],
    failed: [
      "Payment failed",
      "The payment provider could not complete the payment. Take the payment again in a " +
        "minute, or send the customer a payment link. If it keeps failing, tell your supervisor.",
      `Payment ${payment.id}`,
    ],
    cancelled: ["Payment cancelled", cancelText(payment.cancel_reason), ""],
    expired: [
      "Payment timed out",
      "The card details were wiped because the payment took too long. Start again.",
      "",
    ],
    refunded: ["Refunded", `${money} was refunded.`, ""],
    partially_refunded: ["Partly refunded", `Part of ${money} was refunded.`, ""],
    voided: ["Voided", "The authorization was released; nothing was charged.", ""],
  };
  const [title, text, detail] = views[payment.status] ?? [payment.status, "", ""];
  const summary = [money, payment.reference, card].filter(Boolean).join(" · ");
  return [title, text, [summary, detail].filter(Boolean).join(" — ")];
}

function cancelText(reason) {
  return {
    agent: "You cancelled the payment. The card details were wiped; nothing was charged.",
    call_ended: "The call ended before the payment was submitted. Nothing was charged.",
    expired: "The payment took too long and was wiped. Nothing was charged.",
    failed: "A field was keyed wrongly too many times. Nothing was charged; start again.",
    invalid: "The card details were refused. Nothing was charged.",
    replaced_by_link: "The payment went to a payment link instead; what was keyed was wiped.",
  }[reason] ?? "The payment was cancelled. Nothing was charged.";
}

// [name, done, current] for each step of a link's journey.
export function linkSteps(link) {
  const message = link.message?.status;
  const attempt = link.attempt?.status;
  const ended = { expired: "Expired", cancelled: "Cancelled", failed: "Failed" }[link.status];
  const sent = link.channel === "chat" || ["sent", "delivered"].includes(message);
  const steps = [
    [link.channel === "chat" ? "Created" : "Sent", sent],
    ...(link.channel === "chat" ? [] : [["Delivered", message === "delivered"]]),
    ["Opened", Boolean(link.opened_at)],
    ["Card entered", Boolean(attempt)],
    ["Paid", link.status === "completed"],
  ];
  if (message === "failed") steps.splice(1, 0, ["Not delivered", true]);
  if (ended) steps.push([ended, true]);
  const next = steps.findIndex(([, done]) => !done);
  return steps.map(([name, done], index) => [name, done, index === next && !ended]);
}
