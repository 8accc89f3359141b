"""A PSP simulator: the parts of Stripe, Adyen, Checkout.com and the sandbox API that
the connectors use, on their real paths, with state in memory and injectable faults.

`create_simulator_app()` returns a plain ASGI app. It runs in-process, called
directly (the embedded sandbox, `connectors.http.InProcess`) or behind
`httpx.ASGITransport`, or under uvicorn (`transact psp-sim`, the contract tests).

Paths: Stripe `/v1/...`, Adyen `/v71/...`, Checkout.com `/payments...`, the sandbox
`/sandbox/...` (its contract is in `connectors/sandbox.py`). Adyen's
`GET /v71/payments?reference=R` exists only here: real Adyen has no lookup by
merchant reference.

Every provider knows the same test cards (`TEST_CARDS`); any other Luhn-valid
number is approved, a number that fails Luhn is the provider's validation error,
and a card whose expiry has passed is declined as expired. The 3-D Secure card
asks for a challenge only in e-commerce: a MOTO (telephone order) or
merchant-initiated payment is out of scope for 3-D Secure and is approved. Each
payment records its `interaction` (`ecommerce`, `moto`, `merchant_initiated`)
as the provider's flags said it, for tests to check.

A billing postcode is read where each provider takes it (Stripe
`payment_method_data[billing_details][address][postal_code]`, Adyen
`billingAddress.postalCode`, Checkout.com `source.billing_address.zip`, the sandbox
`card.postcode`) and answered with an address check in the provider's own words
(Stripe `latest_charge.payment_method_details.card.checks.address_postal_code_check`
when `expand[]=latest_charge`, Adyen `additionalData.avsResult`, Checkout.com
`source.avs_check`, the sandbox `postcode_check`): the postcodes of
`TEST_POSTCODES` do what they say, any other passes, and none sent is no check
(Stripe and the sandbox say nothing; Adyen "5 No AVS data provided", Checkout.com
"I"). A failed check never declines: that is the merchant's rule. The postcode
itself is not kept, only its verdict (`postcode_check` in `/_sim/payments`).

The simulator never keeps a card number: a payment or token remembers brand, last 4 and what the
test card does, nothing else, and nothing here logs request bodies.

Idempotency, per provider header (`Idempotency-Key`; Checkout.com
`Cko-Idempotency-Key`): the same key with the same request replays the stored
answer and charges nothing; the same key with another request is refused the
provider's way; a key whose first request is still running gets a 409.

Faults, for one request by header `X-Sim-Fault: d1, d2` or for the next N
requests to a provider by `POST /_sim/faults {provider, fault, count?, method?,
path?}` (path is a prefix), where each directive is one of:

* `latency=MS`: answer late;
* `status=500|502|503|429|...`: refuse before processing (nothing charged);
* `timeout` or `timeout=MS`: hold the request unanswered without processing it,
  until the client goes (or MS, default 30 s), then drop the connection;
* `reset`: drop the connection without an answer (RST) before processing;
* `after_charge=500|502|503|timeout|reset`: process the request (the charge IS
  recorded, and the idempotency record holds the real answer), then answer
  with that status, hold, or drop the connection instead.

In-process (no socket and no timeouts) a reset
raises `httpx.RemoteProtocolError` and a timeout raises `httpx.ReadTimeout` at
once, which is what a client on a socket would see; `latency` still sleeps, so
the caller's own `asyncio.timeout` is what bounds it.

Control: `GET /_sim/charges` (approved charges and attempts per provider and
reference), `GET /_sim/payments`, `POST /_sim/faults`, `POST /_sim/reset`,
`GET /_sim/health`, and `POST /_sim/challenges/{payment id} {result:
approved|declined}`: the cardholder completes (or fails) a 3-D Secure challenge,
so the payment's status turns as the provider's would. `POST /_sim/payments/{payment
id} {amount: N}` or `{forget: true}` makes the provider's books disagree with ours
(reconciliation tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import socket
import string
import struct
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import parse_qsl

import httpx
from starlette.types import Receive, Scope, Send

from transact.kernel.sensitive import luhn_valid
from transact.psp import challenge_page

log = logging.getLogger("transact.psp.simulator")

PROVIDERS = ("stripe", "adyen", "checkout", "sandbox")

# What each well-known test card does, whatever the provider.
APPROVE = "approve"
CHALLENGE = "challenge"
TEST_CARDS: Mapping[str, str] = {
    "4242424242424242": APPROVE,
    "4111111111111111": APPROVE,
    "5555555555554444": APPROVE,
    "378282246310005": APPROVE,
    "4000000000000002": "card_declined",
    "4000000000009995": "insufficient_funds",
    "4000000000000127": "incorrect_cvc",
    "4000000000000069": "expired_card",
    "4000000000000119": "processing_error",
    "4000000000003220": CHALLENGE,
}

# Billing postcodes whose address check is known, whatever the provider (compared in
# upper case without spaces or hyphens); any other postcode passes. "00000" can be
# keyed on a phone; "ZZ1 1ZZ" is no real UK postcode (there is no ZZ area).
AVS_MATCH = "pass"
AVS_MISMATCH = "fail"
AVS_UNAVAILABLE = "unavailable"
AVS_ABSENT = "absent"  # a card came without a postcode
TEST_POSTCODES: Mapping[str, str] = {
    "00000": AVS_MISMATCH,
    "ZZ11ZZ": AVS_MISMATCH,
    "99999": AVS_UNAVAILABLE,
}

DEFAULT_HANG_SECONDS = 30.0
_IDEMPOTENCY_HEADER = {
    "stripe": "idempotency-key",
    "adyen": "idempotency-key",
    "checkout": "cko-idempotency-key",
    "sandbox": "idempotency-key",
}


def _byte_table(alphabet: str) -> bytes:
    """Each of the 256 byte values mapped to a character of `alphabet`."""
    return bytes(ord(alphabet[b % len(alphabet)]) for b in range(256))


_LOWER = _byte_table(string.ascii_lowercase + string.digits)
_UPPER = _byte_table(string.ascii_uppercase + string.digits)


def _rand(n: int, table: bytes = _LOWER) -> str:
    # One read of the OS's randomness per id rather than one per character: ids are
    # handed out on every simulated payment. (Unique, not secret: a slight modulo bias
    # towards some characters does not matter here.)
    return secrets.token_bytes(n).translate(table).decode("ascii")


def avs_of(postcode: Any) -> str:
    """The simulated issuer's address check of a billing postcode (not kept)."""
    if not isinstance(postcode, str) or not postcode.strip():
        return AVS_ABSENT
    key = re.sub(r"[\s-]", "", postcode).upper()
    return TEST_POSTCODES.get(key, AVS_MATCH)


def brand_of(number: str) -> str:
    two, four = int(number[:2]), int(number[:4])
    if number.startswith("4"):
        return "visa"
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return "mastercard"
    if two in (34, 37):
        return "amex"
    if number.startswith(("6011", "65")) or 644 <= int(number[:3]) <= 649:
        return "discover"
    if 3528 <= four <= 3589:
        return "jcb"
    if two in (36, 38, 39) or 300 <= int(number[:3]) <= 305:
        return "diners"
    if two == 62:
        return "unionpay"
    return "unknown"


class SimError(Exception):
    """A refusal the provider would answer with its own error shape."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # invalid_number | invalid_request | not_found | amount | state
        self.message = message


@dataclass(frozen=True)
class CardIn:
    """Card fields as one request carried them; read once, never stored."""

    number: str
    exp_month: Any
    exp_year: Any


@dataclass(frozen=True)
class Stored:
    """A token: what the card does, never the card."""

    token: str
    provider: str
    behaviour: str
    brand: str
    last4: str
    shopper: str | None = None


@dataclass
class Payment:
    id: str
    provider: str
    reference: str
    amount: int
    currency: str
    outcome: str  # approved | declined | pending
    decline: str | None
    capture: bool
    brand: str
    last4: str
    kind: str = "payment"  # payment | verification | token
    behaviour: str = APPROVE  # what the test card does: all a token needs to know
    interaction: str = "ecommerce"  # ecommerce | moto | merchant_initiated
    authorized: int = 0
    captured: int = 0
    refunded: int = 0
    voided: bool = False
    captures: int = 0
    token: str | None = None
    source_id: str | None = None
    action_ids: list[str] = field(default_factory=list)
    return_url: str | None = None  # the merchant's way back after a 3-D Secure check
    holder: str | None = None  # the name on the card, as the request gave it
    # The address check of the card's billing postcode (AVS_*); None: no card (a token).
    avs: str | None = None

    def postcode_check(self) -> str | None:
        """pass | fail | unavailable, or None when no postcode came."""
        return None if self.avs in (None, AVS_ABSENT) else self.avs

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "provider": self.provider,
            "reference": self.reference,
            "kind": self.kind,
            "amount": self.amount,
            "currency": self.currency,
            "outcome": self.outcome,
            "decline": self.decline,
            "authorized": self.authorized,
            "captured": self.captured,
            "refunded": self.refunded,
            "voided": self.voided,
            "brand": self.brand,
            "last4": self.last4,
            "interaction": self.interaction,
            "token": self.token is not None,
            "holder": self.holder,
            "postcode_check": self.postcode_check(),
        }


@dataclass
class Fault:
    latency_ms: int = 0
    status: int | None = None
    timeout_s: float | None = None
    reset: bool = False
    after_charge: str | None = None  # a status, "timeout" or "reset"

    @classmethod
    def parse(cls, text: str) -> Fault:
        fault = cls()
        for raw in text.split(","):
            directive = raw.strip()
            if not directive:
                continue
            name, _, value = directive.partition("=")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "latency" and value.isdigit():
                fault.latency_ms = int(value)
            elif name == "status" and value.isdigit():
                fault.status = int(value)
            elif name == "timeout":
                fault.timeout_s = int(value) / 1000 if value.isdigit() else DEFAULT_HANG_SECONDS
            elif name == "reset" and not value:
                fault.reset = True
            elif name == "after_charge" and (value.isdigit() or value in ("timeout", "reset")):
                fault.after_charge = value
            else:
                raise ValueError(f"unknown fault directive {directive!r}")
        return fault

    def merge(self, other: Fault | None) -> Fault:
        if other is None:
            return self
        return Fault(
            latency_ms=self.latency_ms + other.latency_ms,
            status=self.status if self.status is not None else other.status,
            timeout_s=self.timeout_s if self.timeout_s is not None else other.timeout_s,
            reset=self.reset or other.reset,
            after_charge=self.after_charge or other.after_charge,
        )


@dataclass
class FaultRule:
    fault: Fault
    remaining: int
    method: str | None
    path: str | None


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        if not self.body:
            return {}
        try:
            value = json.loads(self.body)
        except ValueError:
            raise SimError("invalid_request", "the body is not JSON") from None
        if not isinstance(value, dict):
            raise SimError("invalid_request", "the body must be a JSON object")
        return value

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))


@dataclass(frozen=True)
class Response:
    status: int
    body: Any = None  # JSON-able; None sends an empty body
    headers: tuple[tuple[str, str], ...] = ()


# --- state ----------------------------------------------------------------------------


class SimState:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.payments: dict[str, Payment] = {}
        self.by_reference: dict[tuple[str, str], list[str]] = {}
        self.tokens: dict[str, Stored] = {}
        self.token_uses: Counter[str] = Counter()
        self.idempotency: dict[tuple[str, str], tuple[bytes, Response]] = {}
        self.in_flight: set[tuple[str, str]] = set()
        self.faults: dict[str, deque[FaultRule]] = {p: deque() for p in PROVIDERS}
        self.charges: Counter[tuple[str, str]] = Counter()
        self.attempts: Counter[tuple[str, str]] = Counter()
        # Keyed digests of request bodies: a body may hold a card number.
        self._fingerprint_key = os.urandom(32)

    def fingerprint(self, request: Request) -> bytes:
        data = request.method.encode() + b" " + request.path.encode() + b"\n" + request.body
        return hmac.new(self._fingerprint_key, data, hashlib.sha256).digest()

    def take_fault(self, provider: str, request: Request) -> Fault | None:
        rules = self.faults[provider]
        for rule in list(rules):
            if rule.method and rule.method != request.method:
                continue
            if rule.path and not request.path.startswith(rule.path):
                continue
            rule.remaining -= 1
            if rule.remaining <= 0:
                rules.remove(rule)
            return rule.fault
        return None

    # --- money ----------------------------------------------------------------------

    @staticmethod
    def behaviour_of(card: CardIn) -> tuple[str, str, str]:
        """(behaviour, brand, last4) of a card; the number goes no further than here."""
        number = re.sub(r"[ -]", "", str(card.number or ""))
        if not (13 <= len(number) <= 19 and number.isdigit() and luhn_valid(number)):
            raise SimError("invalid_number", "invalid card number")
        try:
            month, year = int(card.exp_month), int(card.exp_year)
        except (TypeError, ValueError):
            raise SimError("invalid_request", "invalid expiry date") from None
        if not 1 <= month <= 12:
            raise SimError("invalid_request", "invalid expiry month")
        if year < 100:
            year += 2000
        behaviour = TEST_CARDS.get(number, APPROVE)
        now = time.gmtime()
        if (year, month) < (now.tm_year, now.tm_mon):
            behaviour = "expired_card"
        return behaviour, brand_of(number), number[-4:]

    def authorize(
        self,
        provider: str,
        payment_id: str,
        reference: str,
        amount: Any,
        currency: Any,
        *,
        capture: bool,
        card: CardIn | None = None,
        token: str | None = None,
        kind: str = "payment",
        shopper: str | None = None,
        interaction: str = "ecommerce",
    ) -> Payment:
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
            raise SimError("invalid_request", "amount must be a whole number of minor units")
        if amount == 0 and kind == "payment":
            raise SimError("invalid_request", "amount must be greater than zero")
        if not isinstance(currency, str) or not re.fullmatch(r"[A-Za-z]{3}", currency):
            raise SimError("invalid_request", "currency must be an ISO 4217 code")
        if not isinstance(reference, str) or not reference:
            raise SimError("invalid_request", "reference is required")
        if card is not None:
            behaviour, brand, last4 = self.behaviour_of(card)
        elif token is not None:
            stored = self.tokens.get(token)
            if stored is None or stored.provider != provider:
                raise SimError("not_found", "no such stored payment method")
            if shopper is not None and stored.shopper != shopper:
                raise SimError("invalid_request", "the stored method belongs to another shopper")
            behaviour, brand, last4 = stored.behaviour, stored.brand, stored.last4
            self.token_uses[token] += 1
        else:
            raise SimError("invalid_request", "a card or a stored payment method is required")
        payment = Payment(
            id=payment_id,
            provider=provider,
            reference=reference,
            amount=amount,
            currency=currency.upper(),
            outcome="approved",
            decline=None,
            capture=capture,
            brand=brand,
            last4=last4,
            kind=kind,
            interaction=interaction,
        )
        payment.behaviour = behaviour
        if behaviour == CHALLENGE and interaction != "ecommerce":
            behaviour = APPROVE  # MOTO and merchant-initiated payments skip 3-D Secure
        if behaviour == APPROVE:
            payment.authorized = amount
            payment.captured = amount if capture else 0
        elif behaviour == CHALLENGE:
            payment.outcome = "pending"
        else:
            payment.outcome, payment.decline = "declined", behaviour
        self.payments[payment.id] = payment
        self.by_reference.setdefault((provider, reference), []).append(payment.id)
        if kind == "payment":
            self.attempts[(provider, reference)] += 1
            if payment.outcome == "approved":
                self.charges[(provider, reference)] += 1
        return payment

    def store_token(self, payment: Payment, token: str, shopper: str | None = None) -> Stored:
        stored = Stored(
            token, payment.provider, payment.behaviour, payment.brand, payment.last4, shopper
        )
        self.tokens[token] = stored
        payment.token = token
        return stored

    def find(self, provider: str, payment_id: str) -> Payment:
        payment = self.payments.get(payment_id)
        if payment is None or payment.provider != provider:
            raise SimError("not_found", "no such payment")
        return payment

    def capture(self, payment: Payment, amount: int | None) -> int:
        if payment.outcome != "approved" or payment.voided:
            raise SimError("state", "the payment cannot be captured")
        left = payment.authorized - payment.captured
        amount = left if amount is None else amount
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise SimError("invalid_request", "amount must be greater than zero")
        if amount > left:
            raise SimError("amount", "amount exceeds what is left to capture")
        payment.captured += amount
        payment.captures += 1
        return amount

    def void(self, payment: Payment) -> None:
        if payment.outcome != "approved" or payment.voided or payment.captured:
            raise SimError("state", "the payment cannot be voided")
        payment.voided = True

    def refund(self, payment: Payment, amount: int | None) -> int:
        if payment.outcome != "approved" or payment.captured == 0:
            raise SimError("state", "nothing captured to refund")
        left = payment.captured - payment.refunded
        amount = left if amount is None else amount
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise SimError("invalid_request", "amount must be greater than zero")
        if amount > left:
            raise SimError("amount", "amount exceeds what is left to refund")
        payment.refunded += amount
        return amount

    def with_reference(self, provider: str, reference: str) -> list[Payment]:
        ids = self.by_reference.get((provider, reference), [])
        return [self.payments[i] for i in ids if self.payments[i].kind == "payment"]


Handler = Callable[[SimState, Request, re.Match[str]], Response]


def _int(value: Any, what: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise SimError("invalid_request", f"{what} must be an integer") from None
    return number


# --- Stripe ---------------------------------------------------------------------------

_STRIPE_DECLINES = {
    "card_declined": ("card_declined", "generic_decline", "Your card was declined."),
    "insufficient_funds": (
        "card_declined",
        "insufficient_funds",
        "Your card has insufficient funds.",
    ),
    "incorrect_cvc": ("incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect."),
    "expired_card": ("expired_card", "expired_card", "Your card has expired."),
    "processing_error": (
        "processing_error",
        "processing_error",
        "An error occurred while processing your card.",
    ),
}


def _stripe_error(
    status: int, type_: str, message: str, code: str | None = None, **extra: Any
) -> Response:
    error: dict[str, Any] = {"type": type_, "message": message}
    if code:
        error["code"] = code
    error.update(extra)
    return Response(status, {"error": error})


def _stripe_sim_error(exc: SimError) -> Response:
    if exc.kind == "invalid_number":
        return _stripe_error(
            402, "card_error", "Your card number is incorrect.", "incorrect_number"
        )
    if exc.kind == "not_found":
        return _stripe_error(404, "invalid_request_error", exc.message, "resource_missing")
    if exc.kind == "amount":
        return _stripe_error(400, "invalid_request_error", exc.message, "amount_too_large")
    if exc.kind == "state":
        return _stripe_error(
            400, "invalid_request_error", exc.message, "payment_intent_unexpected_state"
        )
    return _stripe_error(400, "invalid_request_error", exc.message, "parameter_invalid")


def _stripe_charge(p: Payment, *, expand: bool) -> dict[str, Any] | str | None:
    """`latest_charge`: its id, or (`expand[]=latest_charge`) the Charge with its checks.
    A payment waiting for 3-D Secure has no charge yet."""
    if p.outcome == "pending":
        return None
    charge_id = "ch_" + p.id.removeprefix("pi_")
    if not expand:
        return charge_id
    return {
        "id": charge_id,
        "object": "charge",
        "amount": p.amount,
        "status": "failed" if p.outcome == "declined" else "succeeded",
        "payment_method_details": {
            "type": "card",
            "card": {
                "brand": p.brand,
                "last4": p.last4,
                "checks": {
                    "address_line1_check": None,
                    "address_postal_code_check": p.postcode_check(),
                    "cvc_check": None,
                },
            },
        },
    }


def _stripe_intent(p: Payment, *, expand_charge: bool = False) -> dict[str, Any]:
    if p.outcome == "declined":
        status = "requires_payment_method"
    elif p.outcome == "pending":
        status = "requires_action"
    elif p.voided:
        status = "canceled"
    elif p.captured:
        status = "succeeded"
    else:
        status = "requires_capture"
    intent: dict[str, Any] = {
        "id": p.id,
        "object": "payment_intent",
        "amount": p.amount,
        "currency": p.currency.lower(),
        "status": status,
        "capture_method": "automatic" if p.capture else "manual",
        "amount_capturable": p.authorized - p.captured if status == "requires_capture" else 0,
        "amount_received": p.captured,
        "metadata": {"reference": p.reference},
        "payment_method": p.token,
        "latest_charge": _stripe_charge(p, expand=expand_charge),
        "last_payment_error": None,
        "next_action": None,
    }
    if p.outcome == "declined" and p.decline:
        code, decline_code, message = _STRIPE_DECLINES[p.decline]
        intent["last_payment_error"] = {
            "type": "card_error",
            "code": code,
            "decline_code": decline_code,
            "message": message,
        }
    if status == "requires_action":
        intent["next_action"] = {
            "type": "redirect_to_url",
            "redirect_to_url": {
                "url": f"https://sim.invalid/3ds/{p.id}",
                "return_url": p.return_url,
            },
        }
    return intent


def _stripe_card(form: Mapping[str, str], prefix: str) -> CardIn:
    return CardIn(
        form.get(f"{prefix}[number]", ""),
        form.get(f"{prefix}[exp_month]"),
        form.get(f"{prefix}[exp_year]"),
    )


def _stripe_decline(p: Payment, intent_key: str, obj: dict[str, Any]) -> Response:
    code, decline_code, message = _STRIPE_DECLINES[p.decline or "card_declined"]
    return _stripe_error(
        402, "card_error", message, code, decline_code=decline_code, **{intent_key: obj}
    )


def _stripe_check_method(state: SimState, method: str, customer: str | None) -> None:
    """Stripe's rules for charging a saved PaymentMethod again."""
    stored = state.tokens.get(method)
    if stored is None or stored.provider != "stripe":
        return  # authorize() answers "no such payment method"
    if customer is not None and stored.shopper != customer:
        raise SimError(
            "invalid_request", "The provided PaymentMethod does not belong to this Customer."
        )
    if stored.shopper is None and state.token_uses[method] >= 1:
        raise SimError(
            "invalid_request",
            "This PaymentMethod was previously used without being attached to a Customer "
            "or was detached from a Customer, and may not be used again.",
        )


def stripe_create_intent(state: SimState, req: Request, _: re.Match[str]) -> Response:
    form = req.form()
    if form.get("confirm") != "true":
        return _stripe_error(
            400,
            "invalid_request_error",
            "the simulator supports confirm=true only",
            "parameter_invalid",
        )
    card = token = None
    interaction = "ecommerce"
    if form.get("payment_method_data[type]") == "card":
        card = _stripe_card(form, "payment_method_data[card]")
        if form.get("payment_method_options[card][moto]") == "true":
            interaction = "moto"
    elif form.get("payment_method"):
        token = form["payment_method"]
        _stripe_check_method(state, token, form.get("customer"))
        if form.get("off_session") == "true":
            interaction = "merchant_initiated"
    pid = f"pi_{_rand(24)}"
    p = state.authorize(
        "stripe",
        pid,
        form.get("metadata[reference]", ""),
        _int(form.get("amount"), "amount"),
        form.get("currency"),
        capture=form.get("capture_method", "automatic") != "manual",
        card=card,
        token=token,
        interaction=interaction,
    )
    p.return_url = form.get("return_url") or None
    p.holder = form.get("payment_method_data[billing_details][name]") or None
    if card is not None:
        p.avs = avs_of(form.get("payment_method_data[billing_details][address][postal_code]"))
    if p.token is None:
        p.token = token or f"pm_{_rand(24)}"
    expand = {v for k, v in form.items() if k == "expand[]" or re.fullmatch(r"expand\[\d+\]", k)}
    intent = _stripe_intent(p, expand_charge="latest_charge" in expand)
    if p.outcome == "declined":
        return _stripe_decline(p, "payment_intent", intent)
    return Response(200, intent)


def stripe_get_intent(state: SimState, req: Request, m: re.Match[str]) -> Response:
    return Response(200, _stripe_intent(state.find("stripe", m["id"])))


_STRIPE_QUERY = re.compile(r"^metadata\['reference'\]:'((?:[^'\\]|\\.)*)'$")


def stripe_search(state: SimState, req: Request, _: re.Match[str]) -> Response:
    found = _STRIPE_QUERY.match(req.query.get("query", "").strip())
    if found is None:
        return _stripe_error(
            400,
            "invalid_request_error",
            "the simulator searches metadata['reference'] only",
            "parameter_invalid",
        )
    reference = re.sub(r"\\(.)", r"\1", found.group(1))
    data = [_stripe_intent(p) for p in state.with_reference("stripe", reference)]
    return Response(
        200,
        {
            "object": "search_result",
            "url": "/v1/payment_intents/search",
            "has_more": False,
            "data": data,
        },
    )


def stripe_capture(state: SimState, req: Request, m: re.Match[str]) -> Response:
    p = state.find("stripe", m["id"])
    if _stripe_intent(p)["status"] != "requires_capture":
        raise SimError("state", "this PaymentIntent cannot be captured")
    form = req.form()
    amount = form.get("amount_to_capture")
    state.capture(p, None if amount is None else _int(amount, "amount_to_capture"))
    # Stripe captures once: what is not captured is released.
    p.authorized = p.captured
    return Response(200, _stripe_intent(p))


def stripe_cancel(state: SimState, req: Request, m: re.Match[str]) -> Response:
    p = state.find("stripe", m["id"])
    if p.outcome == "approved":
        state.void(p)
    else:
        p.voided = True  # an unconfirmed or declined intent can always be canceled
    return Response(200, _stripe_intent(p))


def stripe_refund(state: SimState, req: Request, _: re.Match[str]) -> Response:
    form = req.form()
    p = state.find("stripe", form.get("payment_intent", ""))
    amount = form.get("amount")
    refunded = state.refund(p, None if amount is None else _int(amount, "amount"))
    return Response(
        200,
        {
            "id": f"re_{_rand(24)}",
            "object": "refund",
            "amount": refunded,
            "currency": p.currency.lower(),
            "payment_intent": p.id,
            "status": "succeeded",
        },
    )


def stripe_payment_method(state: SimState, req: Request, _: re.Match[str]) -> Response:
    form = req.form()
    if form.get("type") != "card":
        return _stripe_error(400, "invalid_request_error", "type must be card", "parameter_invalid")
    behaviour, brand, last4 = state.behaviour_of(_stripe_card(form, "card"))
    token = f"pm_{_rand(24)}"
    state.tokens[token] = Stored(token, "stripe", behaviour, brand, last4)
    return Response(
        200,
        {
            "id": token,
            "object": "payment_method",
            "type": "card",
            "card": {"brand": brand, "last4": last4},
            "metadata": {"reference": form.get("metadata[reference]", "")},
        },
    )


def stripe_customer(state: SimState, req: Request, _: re.Match[str]) -> Response:
    form = req.form()
    customer = f"cus_{_rand(14)}"
    method = form.get("payment_method")
    if method:
        stored = state.tokens.get(method)
        if stored is None or stored.provider != "stripe":
            raise SimError("invalid_request", f"No such PaymentMethod: '{method}'")
        if stored.shopper is not None or state.token_uses[method]:
            raise SimError(
                "invalid_request",
                "This PaymentMethod was previously used or attached and may not be attached.",
            )
        state.tokens[method] = Stored(
            method, "stripe", stored.behaviour, stored.brand, stored.last4, customer
        )
    default = form.get("invoice_settings[default_payment_method]")
    if default and default != method:
        raise SimError("invalid_request", "the default payment method must be attached")
    return Response(
        200,
        {
            "id": customer,
            "object": "customer",
            "invoice_settings": {"default_payment_method": default or None},
            "metadata": {"reference": form.get("metadata[reference]", "")},
        },
    )


def stripe_setup_intent(state: SimState, req: Request, _: re.Match[str]) -> Response:
    form = req.form()
    card = _stripe_card(form, "payment_method_data[card]")
    sid = f"seti_{_rand(24)}"
    p = state.authorize(
        "stripe",
        sid,
        form.get("metadata[reference]", ""),
        0,
        "usd",
        capture=False,
        card=card,
        kind="verification",
    )
    token = f"pm_{_rand(24)}"
    if p.outcome == "approved":
        state.store_token(p, token)
    status = {"approved": "succeeded", "pending": "requires_action"}.get(
        p.outcome, "requires_payment_method"
    )
    intent: dict[str, Any] = {
        "id": sid,
        "object": "setup_intent",
        "status": status,
        "payment_method": token if status == "succeeded" else None,
        "usage": form.get("usage", "off_session"),
        "metadata": {"reference": p.reference},
    }
    if status == "requires_action":
        intent["next_action"] = {
            "type": "redirect_to_url",
            "redirect_to_url": {"url": f"https://sim.invalid/3ds/{sid}"},
        }
    if p.outcome == "declined":
        code, decline_code, message = _STRIPE_DECLINES[p.decline or "card_declined"]
        intent["last_setup_error"] = {
            "type": "card_error",
            "code": code,
            "decline_code": decline_code,
            "message": message,
        }
        return _stripe_decline(p, "setup_intent", intent)
    return Response(200, intent)


# --- Adyen ----------------------------------------------------------------------------

_ADYEN_REFUSALS = {
    "card_declined": ("Refused", "2"),
    "insufficient_funds": ("Not enough balance", "12"),
    "incorrect_cvc": ("CVC Declined", "24"),
    "expired_card": ("Expired Card", "6"),
    "processing_error": ("Acquirer Error", "4"),
}


def _adyen_error(status: int, code: str, message: str, error_type: str) -> Response:
    return Response(
        status, {"status": status, "errorCode": code, "message": message, "errorType": error_type}
    )


def _adyen_sim_error(exc: SimError) -> Response:
    if exc.kind == "invalid_number":
        return _adyen_error(422, "101", "Invalid card number", "validation")
    if exc.kind == "not_found":
        return _adyen_error(
            422, "167", "Original pspReference required for this operation", "validation"
        )
    if exc.kind == "amount":
        return _adyen_error(422, "137", "Invalid amount specified", "validation")
    if exc.kind == "state":
        return _adyen_error(422, "167", exc.message, "validation")
    return _adyen_error(422, "000", exc.message, "validation")


def _adyen_id() -> str:
    return _rand(16, _UPPER)


# The simulator checks the postcode only, so the street is "not checked".
_ADYEN_AVS: Mapping[str, str] = {
    AVS_MATCH: "15 Postal code matches, address not checked",
    AVS_MISMATCH: "17 Postal code doesn't match, address not checked",
    AVS_UNAVAILABLE: "3 AVS unavailable",
    AVS_ABSENT: "5 No AVS data provided",
}


def _adyen_result(p: Payment) -> dict[str, Any]:
    body: dict[str, Any] = {
        "pspReference": p.id,
        "merchantReference": p.reference,
        "amount": {"value": p.amount, "currency": p.currency},
    }
    if p.outcome == "approved":
        body["resultCode"] = "Authorised"
    elif p.outcome == "pending":
        body["resultCode"] = "RedirectShopper"
        body["action"] = {
            "paymentMethodType": "scheme",
            "type": "redirect",
            "method": "GET",
            "url": f"https://sim.invalid/3ds/{p.id}",
        }
    else:
        reason, code = _ADYEN_REFUSALS[p.decline or "card_declined"]
        body |= {"resultCode": "Refused", "refusalReason": reason, "refusalReasonCode": code}
    if p.avs is not None:
        body["additionalData"] = {"avsResult": _ADYEN_AVS[p.avs]}
    return body


def _adyen_status(p: Payment) -> str:
    if p.outcome != "approved":
        return p.outcome
    if p.voided:
        return "cancelled"
    if p.refunded:
        return "refunded" if p.refunded == p.captured else "partially_refunded"
    return "captured" if p.captured else "authorised"


def _adyen_check(body: Mapping[str, Any]) -> None:
    if not body.get("merchantAccount"):
        raise SimError("invalid_request", "merchantAccount is required")


def adyen_payments(state: SimState, req: Request, _: re.Match[str]) -> Response:
    body = req.json()
    _adyen_check(body)
    method = body.get("paymentMethod")
    amount = body.get("amount")
    if not isinstance(method, dict) or not isinstance(amount, dict):
        raise SimError("invalid_request", "paymentMethod and amount are required")
    extra = body.get("additionalData")
    extra = extra if isinstance(extra, dict) else {}
    capture = not (extra.get("manualCapture") == "true" and body.get("captureDelayHours") != 0)
    card = token = shopper = None
    if method.get("storedPaymentMethodId"):
        token, shopper = str(method["storedPaymentMethodId"]), body.get("shopperReference")
    else:
        card = CardIn(method.get("number", ""), method.get("expiryMonth"), method.get("expiryYear"))
    value = amount.get("value")
    store = body.get("storePaymentMethod") is True
    kind = "verification" if value == 0 else "payment"
    if store and value == 0:
        kind = "token"
    interaction = {"Moto": "moto", "ContAuth": "merchant_initiated"}.get(
        str(body.get("shopperInteraction")), "ecommerce"
    )
    if token is not None and interaction != "merchant_initiated":
        raise SimError("invalid_request", "a stored method without the shopper needs ContAuth")
    p = state.authorize(
        "adyen",
        _adyen_id(),
        str(body.get("reference") or ""),
        value,
        amount.get("currency"),
        capture=capture,
        card=card,
        token=token,
        kind=kind,
        shopper=shopper,
        interaction=interaction,
    )
    p.return_url = str(body.get("returnUrl") or "") or None
    if card is not None:
        address = body.get("billingAddress")
        p.avs = avs_of(address.get("postalCode") if isinstance(address, dict) else None)
    result = _adyen_result(p)
    if store and p.outcome == "approved":
        shopper_ref = str(body.get("shopperReference") or "")
        if not shopper_ref:
            raise SimError("invalid_request", "shopperReference is required to store")
        stored = state.store_token(p, _adyen_id(), shopper_ref)
        result["additionalData"] = result.get("additionalData", {}) | {
            "tokenization.storedPaymentMethodId": stored.token,
            "tokenization.shopperReference": shopper_ref,
            "recurring.recurringDetailReference": stored.token,
            "recurring.shopperReference": shopper_ref,
        }
    return Response(200, result)


def adyen_by_reference(state: SimState, req: Request, _: re.Match[str]) -> Response:
    reference = req.query.get("reference", "")
    data = [
        _adyen_result(p) | {"status": _adyen_status(p)}
        for p in state.with_reference("adyen", reference)
    ]
    return Response(200, {"data": data})


def adyen_modification(state: SimState, req: Request, m: re.Match[str]) -> Response:
    body = req.json()
    _adyen_check(body)
    p = state.find("adyen", m["id"])
    kind = m["kind"]
    amount = body.get("amount") if isinstance(body.get("amount"), dict) else None
    value = amount.get("value") if amount else None
    if amount and str(amount.get("currency", "")).upper() != p.currency:
        raise SimError("invalid_request", "currency does not match the payment")
    if kind == "captures":
        done = state.capture(p, value)
    elif kind == "refunds":
        done = state.refund(p, value)
    else:
        state.void(p)
        done = 0
    answer: dict[str, Any] = {
        "merchantAccount": body["merchantAccount"],
        "paymentPspReference": p.id,
        "pspReference": _adyen_id(),
        "reference": body.get("reference"),
        "status": "received",
    }
    if kind != "cancels":
        answer["amount"] = {"value": done, "currency": p.currency}
    return Response(201, answer)


# --- Checkout.com ---------------------------------------------------------------------

_CHECKOUT_DECLINES = {
    "card_declined": ("20057", "Transaction not permitted to cardholder"),
    "insufficient_funds": ("20051", "Insufficient Funds"),
    "incorrect_cvc": ("20087", "Bad Track Data"),
    "expired_card": ("20054", "Expired Card"),
    "processing_error": ("20096", "System Malfunction"),
}


def _checkout_error(status: int, error_type: str, *codes: str) -> Response:
    body: dict[str, Any] = {"request_id": f"req_{_rand(16)}", "error_type": error_type}
    if codes:
        body["error_codes"] = list(codes)
    return Response(status, body)


def _checkout_sim_error(exc: SimError) -> Response:
    if exc.kind == "invalid_number":
        return _checkout_error(422, "request_invalid", "card_number_invalid")
    if exc.kind == "not_found":
        return Response(404)
    if exc.kind == "amount":
        return _checkout_error(422, "request_invalid", "amount_exceeds_balance")
    if exc.kind == "state":
        return _checkout_error(403, "action_not_allowed")
    return _checkout_error(422, "request_invalid", exc.message.replace(" ", "_"))


def _checkout_status(p: Payment) -> str:
    if p.outcome == "declined":
        return "Declined"
    if p.outcome == "pending":
        return "Pending"
    if p.kind != "payment":
        return "Card Verified"
    if p.voided:
        return "Voided"
    if p.refunded:
        return "Refunded" if p.refunded == p.captured else "Partially Refunded"
    if p.captured:
        return "Captured" if p.captured == p.authorized else "Partially Captured"
    return "Authorized"


# Checkout.com AVS codes: "P" postcode matches, street not verified (the simulator
# checks the postcode only); "N" no match; "U" not verified (issuer); "I" not verified.
_CHECKOUT_AVS: Mapping[str, str] = {
    AVS_MATCH: "P",
    AVS_MISMATCH: "N",
    AVS_UNAVAILABLE: "U",
    AVS_ABSENT: "I",
}


def _checkout_payment(p: Payment) -> dict[str, Any]:
    status = _checkout_status(p)
    body: dict[str, Any] = {
        "id": p.id,
        "amount": p.amount,
        "currency": p.currency,
        "reference": p.reference,
        "status": status,
        "approved": p.outcome == "approved",
    }
    if p.outcome == "pending":
        body["_links"] = {
            "self": {"href": f"https://sim.invalid/payments/{p.id}"},
            "redirect": {"href": f"https://sim.invalid/3ds/{p.id}"},
        }
        body["3ds"] = {"downgraded": False, "enrolled": "Y"}
        return body
    if p.outcome == "declined":
        code, summary = _CHECKOUT_DECLINES[p.decline or "card_declined"]
    else:
        code, summary = "10000", "Approved"
    body |= {
        "response_code": code,
        "response_summary": summary,
        "source": {"id": p.source_id, "type": "card", "scheme": p.brand, "last4": p.last4}
        | ({"avs_check": _CHECKOUT_AVS[p.avs]} if p.avs is not None else {}),
        "balances": {
            "total_authorized": p.authorized,
            "total_captured": p.captured,
            "total_refunded": p.refunded,
            "available_to_capture": 0 if p.voided else p.authorized - p.captured,
            "available_to_refund": p.captured - p.refunded,
        },
    }
    return body


def checkout_pay(state: SimState, req: Request, _: re.Match[str]) -> Response:
    body = req.json()
    source = body.get("source")
    if not isinstance(source, dict):
        return _checkout_error(422, "request_invalid", "source_required")
    card = token = None
    if source.get("type") == "card":
        card = CardIn(
            source.get("number", ""), source.get("expiry_month"), source.get("expiry_year")
        )
    elif source.get("type") == "id":
        token = str(source.get("id", ""))
    else:
        return _checkout_error(422, "request_invalid", "source_type_invalid")
    amount = body.get("amount")
    kind = "verification" if amount == 0 else "payment"
    if body.get("merchant_initiated") is True:
        interaction = "merchant_initiated"
    elif body.get("payment_type") == "MOTO":
        interaction = "moto"
    else:
        interaction = "ecommerce"
    p = state.authorize(
        "checkout",
        f"pay_{_rand(26)}",
        str(body.get("reference") or ""),
        amount,
        body.get("currency"),
        capture=body.get("capture", True) is not False,
        card=card,
        token=token,
        kind=kind,
        interaction=interaction,
    )
    p.return_url = str(body.get("success_url") or "") or None
    if card is not None:
        address = source.get("billing_address")
        p.avs = avs_of(address.get("zip") if isinstance(address, dict) else None)
    if token is not None:
        p.source_id = token
    elif p.outcome != "declined":
        p.source_id = f"src_{_rand(26)}"
        if source.get("store_for_future_use", True):
            state.store_token(p, p.source_id)
    answer = _checkout_payment(p)
    if p.outcome == "pending":
        return Response(202, answer)
    answer["action_id"] = f"act_{_rand(26)}"
    return Response(201, answer)


def checkout_get(state: SimState, req: Request, m: re.Match[str]) -> Response:
    return Response(200, _checkout_payment(state.find("checkout", m["id"])))


def checkout_list(state: SimState, req: Request, _: re.Match[str]) -> Response:
    reference = req.query.get("reference")
    if not reference:
        return _checkout_error(422, "request_invalid", "reference_required")
    data = [_checkout_payment(p) for p in reversed(state.with_reference("checkout", reference))]
    limit = _int(req.query.get("limit", "10"), "limit")
    return Response(
        200, {"limit": limit, "skip": 0, "total_count": len(data), "data": data[:limit]}
    )


def checkout_action(state: SimState, req: Request, m: re.Match[str]) -> Response:
    body = req.json()
    p = state.find("checkout", m["id"])
    amount = body.get("amount")
    if m["kind"] == "captures":
        state.capture(p, amount)
    elif m["kind"] == "refunds":
        state.refund(p, amount)
    else:
        state.void(p)
    action = f"act_{_rand(26)}"
    p.action_ids.append(action)
    return Response(202, {"action_id": action, "reference": body.get("reference")})


# --- sandbox --------------------------------------------------------------------------


def _sandbox_error(status: int, code: str, message: str) -> Response:
    return Response(status, {"error": {"code": code, "message": message}})


def _sandbox_sim_error(exc: SimError) -> Response:
    if exc.kind == "not_found":
        return _sandbox_error(404, "not_found", exc.message)
    if exc.kind == "invalid_number":
        return _sandbox_error(422, "invalid_card", exc.message)
    if exc.kind == "amount":
        return _sandbox_error(422, "invalid_amount", exc.message)
    if exc.kind == "state":
        return _sandbox_error(422, "invalid_state", exc.message)
    return _sandbox_error(422, "invalid_request", exc.message)


def _sandbox_payment(p: Payment) -> dict[str, Any]:
    if p.outcome != "approved":
        state_ = p.outcome
    elif p.voided:
        state_ = "voided"
    else:
        state_ = "captured" if p.captured else "authorized"
    body: dict[str, Any] = {
        "id": p.id,
        "reference": p.reference,
        "status": p.outcome,
        "amount": p.amount,
        "currency": p.currency,
        "state": state_,
        "authorized": p.authorized,
        "captured": p.captured,
        "refunded": p.refunded,
        "brand": p.brand,
        "last4": p.last4,
    }
    if p.outcome == "declined":
        body["decline_code"] = p.decline
        body["message"] = (p.decline or "declined").replace("_", " ")
    if p.outcome == "pending":
        body["message"] = "3-D Secure authentication required"
        body["action"] = {"type": "redirect", "url": f"https://sim.invalid/3ds/{p.id}"}
    if p.postcode_check() is not None:
        body["postcode_check"] = p.postcode_check()
    return body


def _sandbox_card(body: Mapping[str, Any]) -> CardIn | None:
    card = body.get("card")
    if not isinstance(card, dict):
        return None
    return CardIn(card.get("number", ""), card.get("exp_month"), card.get("exp_year"))


def sandbox_pay(state: SimState, req: Request, _: re.Match[str]) -> Response:
    body = req.json()
    token = body.get("token") if isinstance(body.get("token"), str) else None
    interaction = str(body.get("interaction") or "ecommerce")
    if interaction not in ("ecommerce", "moto", "merchant_initiated"):
        raise SimError("invalid_request", "interaction is ecommerce, moto or merchant_initiated")
    p = state.authorize(
        "sandbox",
        f"sbp_{_rand(24)}",
        str(body.get("reference") or ""),
        body.get("amount"),
        body.get("currency"),
        capture=body.get("capture", True) is not False,
        card=_sandbox_card(body),
        token=token,
        interaction=interaction,
    )
    p.return_url = str(body.get("return_url") or "") or None
    card = body.get("card")
    p.holder = str(card.get("holder") or "") or None if isinstance(card, dict) else None
    if isinstance(card, dict):
        p.avs = avs_of(card.get("postcode"))
    answer = _sandbox_payment(p)
    if body.get("store") is True and token is None and p.outcome == "approved":
        answer["token"] = state.store_token(p, f"sbt_{_rand(24)}").token
    return Response(201, answer)


def sandbox_verify(state: SimState, req: Request, _: re.Match[str]) -> Response:
    body = req.json()
    p = state.authorize(
        "sandbox",
        f"sbv_{_rand(24)}",
        str(body.get("reference") or ""),
        0,
        body.get("currency", "GBP"),
        capture=False,
        card=_sandbox_card(body),
        kind="verification",
    )
    return Response(201, _sandbox_payment(p))


def sandbox_token(state: SimState, req: Request, _: re.Match[str]) -> Response:
    body = req.json()
    card = _sandbox_card(body)
    if card is None:
        raise SimError("invalid_request", "card is required")
    behaviour, brand, last4 = state.behaviour_of(card)
    token = f"sbt_{_rand(24)}"
    state.tokens[token] = Stored(token, "sandbox", behaviour, brand, last4)
    return Response(201, {"token": token, "brand": brand, "last4": last4})


def sandbox_list(state: SimState, req: Request, _: re.Match[str]) -> Response:
    reference = req.query.get("reference", "")
    return Response(
        200, {"data": [_sandbox_payment(p) for p in state.with_reference("sandbox", reference)]}
    )


def sandbox_get(state: SimState, req: Request, m: re.Match[str]) -> Response:
    return Response(200, _sandbox_payment(state.find("sandbox", m["id"])))


def sandbox_modify(state: SimState, req: Request, m: re.Match[str]) -> Response:
    body = req.json()
    p = state.find("sandbox", m["id"])
    amount = body.get("amount")
    if m["kind"] == "capture":
        done = state.capture(p, amount)
    elif m["kind"] == "void":
        state.void(p)
        done = 0
    else:
        done = state.refund(p, amount)
        return Response(
            201,
            {
                "id": f"sbr_{_rand(24)}",
                "payment_id": p.id,
                "status": "approved",
                "amount": done,
                "currency": p.currency,
            },
        )
    return Response(200, _sandbox_payment(p) | {"status": "approved", "amount": done})


# --- routing --------------------------------------------------------------------------

_SEG = r"(?P<id>[A-Za-z0-9_\-]+)"
ROUTES: list[tuple[str, str, re.Pattern[str], Handler]] = [
    ("stripe", "POST", re.compile(r"^/v1/payment_intents$"), stripe_create_intent),
    ("stripe", "GET", re.compile(r"^/v1/payment_intents/search$"), stripe_search),
    ("stripe", "GET", re.compile(rf"^/v1/payment_intents/{_SEG}$"), stripe_get_intent),
    ("stripe", "POST", re.compile(rf"^/v1/payment_intents/{_SEG}/capture$"), stripe_capture),
    ("stripe", "POST", re.compile(rf"^/v1/payment_intents/{_SEG}/cancel$"), stripe_cancel),
    ("stripe", "POST", re.compile(r"^/v1/refunds$"), stripe_refund),
    ("stripe", "POST", re.compile(r"^/v1/payment_methods$"), stripe_payment_method),
    ("stripe", "POST", re.compile(r"^/v1/setup_intents$"), stripe_setup_intent),
    ("stripe", "POST", re.compile(r"^/v1/customers$"), stripe_customer),
    ("adyen", "POST", re.compile(r"^/v71/payments$"), adyen_payments),
    ("adyen", "GET", re.compile(r"^/v71/payments$"), adyen_by_reference),
    (
        "adyen",
        "POST",
        re.compile(rf"^/v71/payments/{_SEG}/(?P<kind>captures|cancels|refunds)$"),
        adyen_modification,
    ),
    ("checkout", "POST", re.compile(r"^/payments$"), checkout_pay),
    ("checkout", "GET", re.compile(r"^/payments$"), checkout_list),
    ("checkout", "GET", re.compile(rf"^/payments/{_SEG}$"), checkout_get),
    (
        "checkout",
        "POST",
        re.compile(rf"^/payments/{_SEG}/(?P<kind>captures|voids|refunds)$"),
        checkout_action,
    ),
    ("sandbox", "POST", re.compile(r"^/sandbox/payments$"), sandbox_pay),
    ("sandbox", "GET", re.compile(r"^/sandbox/payments$"), sandbox_list),
    ("sandbox", "GET", re.compile(rf"^/sandbox/payments/{_SEG}$"), sandbox_get),
    (
        "sandbox",
        "POST",
        re.compile(rf"^/sandbox/payments/{_SEG}/(?P<kind>capture|void|refunds)$"),
        sandbox_modify,
    ),
    ("sandbox", "POST", re.compile(r"^/sandbox/verifications$"), sandbox_verify),
    ("sandbox", "POST", re.compile(r"^/sandbox/tokens$"), sandbox_token),
]

_SIM_ERRORS: Mapping[str, Callable[[SimError], Response]] = {
    "stripe": _stripe_sim_error,
    "adyen": _adyen_sim_error,
    "checkout": _checkout_sim_error,
    "sandbox": _sandbox_sim_error,
}


def provider_of(path: str) -> str | None:
    if path.startswith("/v1/"):
        return "stripe"
    if path.startswith("/v71/"):
        return "adyen"
    if path == "/payments" or path.startswith("/payments/"):
        return "checkout"
    if path.startswith("/sandbox/"):
        return "sandbox"
    return None


def injected_error(provider: str, status: int) -> Response:
    """The provider's answer for a refusal before processing (or a faked failure)."""
    if provider == "stripe":
        if status == 429:
            return _stripe_error(429, "invalid_request_error", "Too many requests.", "rate_limit")
        return _stripe_error(
            status, "api_error", "An error occurred with our connection to Stripe."
        )
    if provider == "adyen":
        kind = "rateLimit" if status == 429 else "internal"
        return _adyen_error(status, "905" if status >= 500 else "000", f"simulated {status}", kind)
    if provider == "checkout":
        if status == 429:
            return _checkout_error(429, "too_many_requests")
        return Response(status) if status >= 500 else _checkout_error(status, "request_invalid")
    code = {429: "rate_limited", 503: "unavailable"}.get(status, "internal")
    return _sandbox_error(status, code, f"simulated {status}")


def _unauthorized(provider: str) -> Response:
    if provider == "stripe":
        return _stripe_error(401, "invalid_request_error", "Invalid API Key provided.")
    if provider == "adyen":
        return _adyen_error(401, "000", "HTTP Status Response - Unauthorized", "security")
    if provider == "checkout":
        return Response(401)
    return _sandbox_error(401, "unauthorized", "invalid API key")


def _idempotency_conflict(provider: str, running: bool) -> Response:
    if running:
        message = "a request with this idempotency key is still being processed"
    else:
        message = "this idempotency key was used with a different request"
    if provider == "stripe":
        return _stripe_error(409 if running else 400, "idempotency_error", message)
    if provider == "adyen":
        return _adyen_error(
            409 if running else 422, "704", "request already processed or in progress", "validation"
        )
    if provider == "checkout":
        return _checkout_error(409, "idempotency_key_conflict")
    return _sandbox_error(409, "idempotency_conflict", message)


# --- the ASGI app ---------------------------------------------------------------------


class SimulatorApp:
    def __init__(
        self, *, sandbox_api_key: str | None = None, hang_seconds: float = DEFAULT_HANG_SECONDS
    ) -> None:
        self.state = SimState()
        self.sandbox_api_key = sandbox_api_key
        self.hang_seconds = hang_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = await _read_body(receive)
        headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])
        }
        query = dict(
            parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        )
        request = Request(scope["method"], scope["path"], query, headers, body)
        if request.path.startswith("/_sim/"):
            await _respond(send, self._control(request))
            return
        if request.path.startswith("/3ds/"):
            # The cardholder's 3-D Secure page (what `action_url` points at).
            await challenge_page.serve(self, request, send)
            return
        provider = provider_of(request.path)
        if provider is None:
            await _respond(send, Response(404, {"error": "no simulated provider here"}))
            return
        try:
            header_fault = Fault.parse(headers.get("x-sim-fault", ""))
        except ValueError as exc:
            await _respond(send, Response(400, {"sim_error": str(exc)}))
            return
        fault = header_fault.merge(self.state.take_fault(provider, request))
        refused = fault.timeout_s is not None or fault.reset or fault.status is not None
        if fault.latency_ms and refused:
            await asyncio.sleep(fault.latency_ms / 1000)
        if fault.timeout_s is not None:
            await self._hang(receive, send, fault.timeout_s)
            await _drop(send, as_timeout=True)
            return
        if fault.reset:
            await _drop(send, as_timeout=False)
            return
        if fault.status is not None:
            await _respond(send, injected_error(provider, fault.status))
            return
        response = await self._process(provider, request, fault.latency_ms / 1000)
        if fault.after_charge is not None:
            if fault.after_charge == "timeout":
                await self._hang(receive, send, self.hang_seconds)
                await _drop(send, as_timeout=True)
            elif fault.after_charge == "reset":
                await _drop(send, as_timeout=False)
            else:
                await _respond(send, injected_error(provider, int(fault.after_charge)))
            return
        await _respond(send, response)

    def _authorized(self, provider: str, headers: Mapping[str, str]) -> bool:
        auth = headers.get("authorization", "")
        if provider == "stripe":
            return auth.startswith("Bearer sk_")
        if provider == "adyen":
            return bool(headers.get("x-api-key"))
        if provider == "checkout":
            return auth.removeprefix("Bearer ").startswith("sk_")
        return self.sandbox_api_key is None or hmac.compare_digest(
            auth, f"Bearer {self.sandbox_api_key}"
        )

    async def _process(self, provider: str, request: Request, latency: float) -> Response:
        """Authenticate, honour the idempotency key, then do the work.

        The latency is spent while the key is claimed, as a slow provider would
        spend it: a second request with the same key meanwhile gets a 409.
        """
        if not self._authorized(provider, request.headers):
            return _unauthorized(provider)
        key = (
            request.headers.get(_IDEMPOTENCY_HEADER[provider]) if request.method == "POST" else None
        )
        slot = (provider, key) if key else None
        if slot is not None:
            if slot in self.state.in_flight:
                return _idempotency_conflict(provider, running=True)
            stored = self.state.idempotency.get(slot)
            if stored is not None:
                fingerprint, response = stored
                if not hmac.compare_digest(fingerprint, self.state.fingerprint(request)):
                    return _idempotency_conflict(provider, running=False)
                replayed = (*response.headers, ("idempotent-replayed", "true"))
                return Response(response.status, response.body, replayed)
            self.state.in_flight.add(slot)
        try:
            if latency:
                await asyncio.sleep(latency)
            response = self._dispatch(provider, request)
            if slot is not None:
                self.state.idempotency[slot] = (self.state.fingerprint(request), response)
            return response
        finally:
            if slot is not None:
                self.state.in_flight.discard(slot)

    def _dispatch(self, provider: str, request: Request) -> Response:
        allowed = False
        for owner, method, pattern, handler in ROUTES:
            if owner != provider:
                continue
            match = pattern.match(request.path)
            if match is None:
                continue
            allowed = True
            if method != request.method:
                continue
            try:
                return handler(self.state, request, match)
            except SimError as exc:
                return _SIM_ERRORS[provider](exc)
            except Exception as exc:
                # A simulator bug: say where, never what (an exception's text or a
                # traceback's values could hold the card number of the request).
                log.error(
                    "psp simulator handler %s failed: %s", handler.__name__, type(exc).__name__
                )
                return injected_error(provider, 500)
        return Response(405 if allowed else 404, {"error": "not simulated"})

    async def _hang(self, receive: Receive, send: Send, seconds: float) -> None:
        """Hold the request until the client gives up (or `seconds` pass).

        In-process there is no client timeout to wait for: return at once, and
        `_drop` raises the timeout the client would have seen.
        """
        if _transport(send) is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while (await receive())["type"] != "http.disconnect":
                    pass

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    # --- control ------------------------------------------------------------------

    def _control(self, request: Request) -> Response:
        state = self.state
        route = (request.method, request.path)
        if route == ("GET", "/_sim/health"):
            return Response(200, {"ok": True})
        if route == ("POST", "/_sim/reset"):
            state.reset()
            return Response(200, {"reset": True})
        if route == ("GET", "/_sim/charges"):
            charges: dict[str, dict[str, int]] = {p: {} for p in PROVIDERS}
            attempts: dict[str, dict[str, int]] = {p: {} for p in PROVIDERS}
            for (owner, ref), n in state.charges.items():
                charges[owner][ref] = n
            for (owner, ref), n in state.attempts.items():
                attempts[owner][ref] = n
            return Response(200, {"charges": charges, "attempts": attempts})
        if route == ("GET", "/_sim/payments"):
            which, wanted = request.query.get("provider"), request.query.get("reference")
            rows = [
                p.public()
                for p in state.payments.values()
                if (which is None or p.provider == which)
                and (wanted is None or p.reference == wanted)
            ]
            return Response(200, {"data": rows})
        if request.method == "POST" and request.path.startswith("/_sim/challenges/"):
            return self._complete_challenge(request)
        if request.method == "POST" and request.path.startswith("/_sim/payments/"):
            return self._tamper(request)
        if route == ("POST", "/_sim/faults"):
            try:
                body = request.json()
                provider = str(body.get("provider"))
                if provider not in PROVIDERS:
                    raise ValueError(f"provider must be one of {', '.join(PROVIDERS)}")
                fault = Fault.parse(str(body.get("fault", "")))
                count = int(body.get("count", 1))
                if count < 1:
                    raise ValueError("count must be at least 1")
            except (SimError, ValueError, TypeError) as exc:
                return Response(400, {"sim_error": str(exc)})
            method = body.get("method")
            path = body.get("path")
            state.faults[provider].append(
                FaultRule(
                    fault,
                    count,
                    str(method).upper() if method else None,
                    str(path) if path else None,
                )
            )
            return Response(201, {"queued": sum(r.remaining for r in state.faults[provider])})
        return Response(404, {"error": "no such control endpoint"})

    def _tamper(self, request: Request) -> Response:
        """Make the provider's books disagree with ours, for reconciliation tests:
        `{"amount": N}` changes what it says was paid, `{"forget": true}` loses the
        payment (its reference finds nothing any more)."""
        state = self.state
        payment = state.payments.get(request.path.removeprefix("/_sim/payments/"))
        if payment is None:
            return Response(404, {"sim_error": "no payment under that id"})
        try:
            body = request.json()
            if body.get("forget") is True:
                del state.payments[payment.id]
                key = (payment.provider, payment.reference)
                state.by_reference[key] = [
                    i for i in state.by_reference.get(key, []) if i != payment.id
                ]
                return Response(200, {"forgotten": payment.id})
            amount = _int(body.get("amount"), "amount")
        except (SimError, ValueError, TypeError, AttributeError) as exc:
            return Response(400, {"sim_error": str(exc)})
        payment.amount = amount
        payment.authorized = amount if payment.authorized else 0
        payment.captured = amount if payment.captured else 0
        return Response(200, payment.public())

    def _complete_challenge(self, request: Request) -> Response:
        payment = self.state.payments.get(request.path.removeprefix("/_sim/challenges/"))
        if payment is None or payment.outcome != "pending":
            return Response(404, {"sim_error": "no payment waits for a challenge under that id"})
        try:
            result = request.json().get("result", "approved")
        except SimError as exc:
            return Response(400, {"sim_error": exc.message})
        if result == "approved":
            payment.outcome = "approved"
            payment.authorized = payment.amount
            payment.captured = payment.amount if payment.capture else 0
            if payment.kind == "payment":
                self.state.charges[(payment.provider, payment.reference)] += 1
        elif result == "declined":
            payment.outcome, payment.decline = "declined", "card_declined"
        else:
            return Response(400, {"sim_error": "result must be approved or declined"})
        return Response(200, payment.public())


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _respond(send: Send, response: Response) -> None:
    payload = b"" if response.body is None else json.dumps(response.body).encode()
    headers = [(b"content-length", str(len(payload)).encode())]
    if response.body is not None:
        headers.append((b"content-type", b"application/json"))
    headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def _transport(send: Send) -> asyncio.Transport | None:
    """The socket transport behind uvicorn's `send`; None in-process."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    # Duck-typed: uvloop's transports are not asyncio.Transport subclasses.
    if callable(getattr(transport, "abort", None)) and callable(
        getattr(transport, "get_extra_info", None)
    ):
        return cast(asyncio.Transport, transport)
    return None


async def _drop(send: Send, *, as_timeout: bool) -> None:
    """End the exchange without an answer, as a failed network would.

    Under uvicorn `send` is bound to the connection's request cycle, whose
    transport we abort with SO_LINGER 0 so the client gets a TCP reset. With no
    socket (httpx.ASGITransport) we raise what httpx raises for the same event.
    """
    transport = _transport(send)
    if transport is None:
        if as_timeout:
            raise httpx.ReadTimeout("simulated timeout: no answer")
        raise httpx.RemoteProtocolError("simulated reset: connection closed without an answer")
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    # Let the server see the connection go, so it does not answer for us.
    for _ in range(3):
        await asyncio.sleep(0)


def create_simulator_app(
    *, sandbox_api_key: str | None = None, hang_seconds: float = DEFAULT_HANG_SECONDS
) -> SimulatorApp:
    """A fresh simulator with empty state (each app holds its own)."""
    return SimulatorApp(sandbox_api_key=sandbox_api_key, hang_seconds=hang_seconds)
