// Words the agent reads: error envelopes, decline codes, field names, money.

const FRIENDLY = {
  network: "Transact cannot be reached. Check the connection; nothing was lost.",
  invalid_credentials: "The organisation, username or password is not right.",
  account_locked:
    "Too many failed attempts: this account is locked for 30 minutes. An admin can unlock it.",
  otp_required: "Enter the 6-digit code from your authenticator app.",
  invalid_otp: "That code does not match. Wait for the next code and try again.",
  invalid_launch: "This sign-in link has expired or was used already. Sign in with your password.",
  no_enrolment: "The set-up took too long. Sign in again to start over.",
  session_expired: "Your session has ended. Please sign in again.",
  unauthenticated: "Please sign in.",
  token_expired: "Your session has ended. Please sign in again.",
  invalid_token: "Your session has ended. Please sign in again.",
  csrf_failed: "A security check failed. Reload the page and sign in again.",
  forbidden: "Your role does not allow this. Ask a supervisor.",
  not_found: "That could not be found. It may have ended or belong to someone else.",
  call_not_found: "That call is not live any more.",
  call_ended: "That call has ended.",
  call_taken: "Another agent already holds this call.",
  ambiguous: "More than one live call has that reference. Ask for the full reference.",
  invalid_reference: "That does not look like a call reference (for example K7-3Q9).",
  not_your_call: "This call is not linked to you. Claim it first.",
  capture_in_progress: "This call already has a payment in progress.",
  invalid_amount: "Enter an amount greater than zero.",
  invalid_currency: "Choose a currency from the list.",
  not_ready: "Every field must be complete and valid before submitting.",
  not_capturing: "This payment is no longer taking card details.",
  cannot_recapture: "That field cannot be asked for again right now.",
  capture_expired: "The card details timed out and were wiped. Start the payment again.",
  already_submitted: "This payment was already submitted; a supervisor can refund it.",
  not_refundable: "This payment cannot be refunded (it was not approved, or is fully refunded).",
  refund_too_large: "That is more than is left to refund.",
  operation_in_progress: "Another change to this payment is still running. Try again shortly.",
  psp_unavailable: "The payment provider is not answering. Try again in a minute.",
  connector_unavailable: "The payment provider is not available for this payment.",
  link_not_open: "This link is no longer open.",
  already_paid: "This link has been paid already.",
  invalid_number: "Enter the mobile number with its country code, e.g. +44 7700 900123.",
  invalid_email: "Enter a valid e-mail address.",
  invalid_settings: "Those settings cannot be saved:",
  too_many_requests: "Too many requests in a short time.",
  payload_too_large: "That is too much data to send.",
  unavailable: "A part of Transact is unavailable. Try again shortly.",
  internal_error: "Something went wrong on our side. Try again; tell your supervisor if it persists.",
};

// Codes whose server message adds what the friendly line lacks (which field, how long).
const WITH_DETAIL = new Set(["invalid_request", "invalid_settings", "invalid_status"]);

export function friendly(problem) {
  const code = problem?.code ?? "internal_error";
  let text = FRIENDLY[code];
  if (code === "too_many_requests" && problem.retryAfter) {
    text += ` Try again in ${problem.retryAfter} seconds.`;
  }
  if (code === "call_taken" && problem.extra?.agent?.username) {
    text = `Agent ${problem.extra.agent.username} already holds this call.`;
  }
  if (!text || WITH_DETAIL.has(code)) {
    text = [text, problem?.message].filter(Boolean).join(" ");
  }
  if (code === "internal_error" && problem.requestId) text += ` (request ${problem.requestId})`;
  return text || "Something went wrong.";
}

const DECLINES = {
  card_declined:
    "The card issuer declined the payment. Ask the customer for another card, or to call their bank.",
  insufficient_funds: "Not enough funds on this card. Ask the customer for another card.",
  incorrect_cvc:
    "The security code was wrong. Take the payment again and ask the customer to check it.",
  expired_card: "The card has expired. Ask the customer for another card.",
  do_not_honor:
    "The bank refused without saying why. The customer should call their bank or use another card.",
  processing_error:
    "The payment provider had a problem. Nothing was charged; try again in a moment.",
  authentication_required:
    "The bank wants the cardholder to confirm this payment. Send a payment link instead.",
  invalid_request: "The payment provider refused the details. Take the payment again.",
  rate_limited: "The payment provider is busy. Try again in a minute.",
  unavailable: "The payment provider is unavailable. Try again in a minute.",
};

export function declineReason(code) {
  return DECLINES[code] ?? "The card was declined. Ask the customer for another card.";
}

export const FIELD_NAMES = {
  pan: "Card number",
  expiry: "Expiry date (MMYY)",
  cvv: "Security code",
  postcode: "Postcode",
};

export const METHOD_NAMES = {
  keypad: "Phone keypad",
  speech: "Speech",
  link_sms: "Link by SMS",
  link_email: "Link by e-mail",
  link_chat: "Link for a web chat",
};

export const BRANDS = {
  visa: "Visa",
  mastercard: "Mastercard",
  amex: "American Express",
  discover: "Discover",
  diners: "Diners Club",
  jcb: "JCB",
  unionpay: "UnionPay",
  maestro: "Maestro",
};

export const STATUS_NAMES = {
  capturing: "Taking card details",
  ready: "Ready to submit",
  submitted: "With the payment provider",
  authorized: "Approved",
  declined: "Declined",
  failed: "Failed",
  cancelled: "Cancelled",
  expired: "Timed out",
  refunded: "Refunded",
  partially_refunded: "Partly refunded",
  voided: "Voided",
};

// Money is an integer of minor units; `exponent` is the currency's minor-unit digits.
export function formatMoney(minor, currency, exponent = 2) {
  try {
    return new Intl.NumberFormat(undefined, {
      style: "currency",
      currency,
      minimumFractionDigits: exponent,
      maximumFractionDigits: exponent,
    }).format(minor / 10 ** exponent);
  } catch {
    return `${(minor / 10 ** exponent).toFixed(exponent)} ${currency}`;
  }
}

// "12.5" -> 1250 for exponent 2, without floating point; null when it is not an amount.
export function parseAmount(text, exponent = 2) {
  const cleaned = String(text).replace(/[\s,]/g, "");
  const match = /^(\d{1,12})(?:\.(\d*))?$/.exec(cleaned);
  if (!match) return null;
  const fraction = match[2] ?? "";
  if (fraction.length > exponent) return null;
  const minor = Number(match[1] + fraction.padEnd(exponent, "0"));
  return Number.isSafeInteger(minor) && minor > 0 ? minor : null;
}
