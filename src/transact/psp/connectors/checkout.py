"""Checkout.com: the unified payments API with a full card source, JSON.

* authorize: `POST /payments` `{source: {type: "card", number, expiry_month,
  expiry_year, cvv, name}, amount, currency, reference, capture}` (a token is
  `source: {type: "id", id: "src_..."}`), `Authorization: Bearer sk_...`,
  `Cko-Idempotency-Key`. `processing_channel_id` is sent when configured
  (required on accounts that have processing channels).
* `payment_type`: `"MOTO"` for a card given over the phone (exempt from 3-D
  Secure), `"Regular"` for pay-by-link. `source.store_for_future_use` follows
  `Order.store`: when true, the approved payment's `source.id` is our token.
* charge a stored token: `source: {type: "id", id}` with `merchant_initiated:
  true` and `payment_type: "Unscheduled"` (card on file, no cardholder).
* `201` with `approved: true` → approved; `approved: false` (`status: Declined`)
  → declined, mapped from the five-digit `response_code` (20051 insufficient
  funds, 20054 / 30033 expired, 20087 bad track data (CVV or expiry), 20005 do not
  honour, ...; any other 2xxxx/3xxxx/4xxxx is a plain card decline); `202` with
  `status: Pending` → pending, the 3-D Secure page in `_links.redirect`.
* errors: `422 {error_type, error_codes}` → invalid request (nothing charged);
  `401`; `429` ("too many requests or duplicate request detected": a body
  that says duplicate is not proof of no charge); `5xx`.
* capture / void / refund: `POST /payments/{id}/captures|voids|refunds` → `202
  {action_id}`: accepted for processing, read as approved (final state by
  webhook or `GET /payments/{id}`). Our idempotency key is the action's `reference`.
* verify: a zero-amount card payment (`status: Card Verified`).
* tokenize: `POST /tokens` needs the public key and `POST /instruments` takes
  only such a token, so a server holding raw card data tokenizes with a
  zero-amount verification whose card `source` is stored
  (`store_for_future_use`); the token is the answer's `source.id` (`src_...`).
* status: `GET /payments/{id}` when the PSP id is known, else
  `GET /payments?reference=R` (`{total_count, data: [...]}`). Checkout.com does
  not promise that list is current to the second, so "nothing found" keeps
  `may_retry_elsewhere` False.
* billing postcode (AVS): the card source's `billing_address: {zip}` (every field of
  Checkout.com's address is optional, so the postcode goes alone). The verdict is the
  answer's `source.avs_check`, one of Checkout.com's AVS codes: the codes that say
  the postcode matches (D F M P W X Y Z, Amex AE1 AE2) are "pass", those that say it
  does not (A N) are "fail", every other code (not verified, unavailable, not
  supported, ...) is "unavailable".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from transact.kernel.sensitive import SensitiveStr
from transact.psp.connectors.base import (
    Card,
    DeclineCode,
    HttpCall,
    Interaction,
    Order,
    Outcome,
    PostcodeCheck,
    PspResult,
)
from transact.psp.connectors.common import (
    Scrubber,
    as_dict,
    http_error,
    pick_status,
    safe_text,
    unexpected,
)

# API code = 20000 + the issuer's ISO 8583 code for soft declines (20051 is ISO 51).
RESPONSE_CODES: Mapping[str, DeclineCode] = {
    "20005": DeclineCode.DO_NOT_HONOR,
    "20051": DeclineCode.INSUFFICIENT_FUNDS,
    "20054": DeclineCode.EXPIRED_CARD,
    "30033": DeclineCode.EXPIRED_CARD,  # expired card, pick up
    "20087": DeclineCode.INCORRECT_CVC,  # bad track data: CVV and/or expiry
    "20082": DeclineCode.INCORRECT_CVC,  # ISO 82: negative CVV results
    "200N7": DeclineCode.INCORRECT_CVC,  # ISO N7: CVV2 failure
    "20091": DeclineCode.PROCESSING_ERROR,  # issuer unavailable
    "20096": DeclineCode.PROCESSING_ERROR,  # system malfunction
    "20012": DeclineCode.CARD_DECLINED,  # invalid transaction
    "20014": DeclineCode.CARD_DECLINED,  # invalid card number
    "20057": DeclineCode.CARD_DECLINED,  # not permitted to cardholder
    "20059": DeclineCode.CARD_DECLINED,  # suspected fraud
    "20062": DeclineCode.CARD_DECLINED,  # restricted card
}
_APPROVED_STATES = frozenset(
    {
        "Authorized",
        "Captured",
        "Card Verified",
        "Partially Captured",
        "Paid",
        "Refunded",
        "Partially Refunded",
        "Voided",
    }
)
_SCRUB = Scrubber(["number", "expiry_month", "expiry_year", "cvv", "name", "zip"])

# `source.avs_check` codes by what they say of the postcode (Checkout.com's AVS codes).
AVS_POSTCODE_PASS = frozenset({"D", "F", "M", "P", "W", "X", "Y", "Z", "AE1", "AE2"})
AVS_POSTCODE_FAIL = frozenset({"A", "N"})


def response_code(code: Any) -> DeclineCode:
    return RESPONSE_CODES.get(str(code), DeclineCode.CARD_DECLINED)


def postcode_check(answer: Mapping[str, Any]) -> PostcodeCheck | None:
    """What `source.avs_check` says of the postcode; None when there is no such code."""
    code = as_dict(answer.get("source")).get("avs_check")
    if not isinstance(code, str) or not code.strip():
        return None
    code = code.strip().upper()
    if code in AVS_POSTCODE_PASS:
        return "pass"
    if code in AVS_POSTCODE_FAIL:
        return "fail"
    return "unavailable"


class CheckoutConnector:
    name = "checkout"
    brands = frozenset({"visa", "mastercard", "amex", "discover", "diners", "jcb"})
    currencies: frozenset[str] | None = None
    supports_status_query = True

    def __init__(
        self,
        secret_key: str,
        base_url: str = "https://api.sandbox.checkout.com",
        processing_channel_id: str | None = None,
        verification_currency: str = "GBP",
    ) -> None:
        if not secret_key:
            raise ValueError("checkout needs a secret key")
        self.base_url = base_url
        self.processing_channel_id = processing_channel_id
        self.verification_currency = verification_currency
        self._secret = SensitiveStr(secret_key)

    def __repr__(self) -> str:
        return f"CheckoutConnector(base_url={self.base_url!r})"

    # --- requests ---------------------------------------------------------------

    def _headers(self, idempotency_key: str | None = None) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {self._secret.reveal()}",
            "Content-Type": "application/json",
        }
        if idempotency_key is not None:
            headers["Cko-Idempotency-Key"] = idempotency_key
        return headers

    @staticmethod
    def _card(card: Card) -> dict[str, Any]:
        source: dict[str, Any] = {
            "type": "card",
            "number": card.pan.reveal(),
            "expiry_month": card.expiry_month,
            "expiry_year": card.expiry_year,
        }
        if card.cvv is not None:
            source["cvv"] = card.cvv.reveal()
        if card.holder:
            source["name"] = card.holder
        if card.postcode:
            source["billing_address"] = {"zip": card.postcode}
        return source

    def _payment(
        self, reference: str, amount: int, currency: str, source: dict[str, Any], capture: bool
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "source": source,
            "amount": amount,
            "currency": currency.upper(),
            "reference": reference,
            "capture": capture,
        }
        if self.processing_channel_id:
            body["processing_channel_id"] = self.processing_channel_id
        return body

    def authorize_call(self, order: Order) -> HttpCall:
        if order.card is None:
            if order.token is not None:
                return self.charge_token_call(order)
            raise ValueError("an order needs a card or a token")
        source = self._card(order.card) | {"store_for_future_use": order.store}
        body = self._payment(order.reference, order.amount, order.currency, source, order.capture)
        body["payment_type"] = "MOTO" if order.interaction is Interaction.MOTO else "Regular"
        if order.description:
            body["description"] = order.description
        if order.return_url:
            # Checkout.com sends the cardholder to one or the other after 3-D Secure; the
            # page asks us which it was either way.
            body["success_url"] = body["failure_url"] = order.return_url
        return HttpCall("POST", "/payments", self._headers(order.idempotency_key), body)

    def charge_token_call(self, order: Order) -> HttpCall:
        if order.token is None or order.card is not None:
            raise ValueError("a stored-card charge needs a token and no card")
        source = {"type": "id", "id": order.token}
        body = self._payment(order.reference, order.amount, order.currency, source, order.capture)
        body["merchant_initiated"] = True
        body["payment_type"] = "Unscheduled"
        if order.description:
            body["description"] = order.description
        return HttpCall("POST", "/payments", self._headers(order.idempotency_key), body)

    def _action(
        self, psp_reference: str, kind: str, idempotency_key: str, amount: int | None = None
    ) -> HttpCall:
        body: dict[str, Any] = {"reference": idempotency_key}
        if amount is not None:
            body["amount"] = amount
        path = f"/payments/{quote(psp_reference, safe='')}/{kind}"
        return HttpCall("POST", path, self._headers(idempotency_key), body)

    def capture_call(
        self, psp_reference: str, amount: int, currency: str, idempotency_key: str
    ) -> HttpCall:
        return self._action(psp_reference, "captures", idempotency_key, amount)

    def void_call(self, psp_reference: str, idempotency_key: str) -> HttpCall:
        return self._action(psp_reference, "voids", idempotency_key)

    def refund_call(
        self, psp_reference: str, amount: int, currency: str, idempotency_key: str
    ) -> HttpCall:
        return self._action(psp_reference, "refunds", idempotency_key, amount)

    def verify_call(self, order: Order) -> HttpCall:
        if order.card is None:
            raise ValueError("verification needs a card")
        body = self._payment(order.reference, 0, order.currency, self._card(order.card), False)
        return HttpCall("POST", "/payments", self._headers(order.idempotency_key), body)

    def tokenize_call(self, card: Card, reference: str, idempotency_key: str) -> HttpCall:
        source = self._card(card) | {"store_for_future_use": True}
        body = self._payment(reference, 0, self.verification_currency, source, False)
        return HttpCall("POST", "/payments", self._headers(idempotency_key), body)

    def keep_token_call(self, token: str, reference: str, idempotency_key: str) -> HttpCall | None:
        return None  # a stored source is reusable as it is

    def parse_keep_token(self, status: int, body: Any) -> PspResult:
        return unexpected(status, "source")

    def status_call(self, reference: str, psp_reference: str | None) -> HttpCall:
        if psp_reference:
            return HttpCall("GET", f"/payments/{quote(psp_reference, safe='')}", self._headers())
        return HttpCall(
            "GET", f"/payments?reference={quote(reference, safe='')}&limit=100", self._headers()
        )

    # --- answers ----------------------------------------------------------------

    def _error(self, status: int, body: Any) -> PspResult:
        answer = as_dict(body)
        codes = answer.get("error_codes")
        words = [str(c) for c in codes] if isinstance(codes, list) else []
        message = safe_text(", ".join(words) or answer.get("error_type"))
        result = http_error(status, message)
        if status == 429 and any(
            "duplicate" in w.lower() for w in [*words, str(answer.get("error_type", ""))]
        ):
            # Checkout.com answers 429 for a duplicate too: the first may have charged.
            return replace(result, may_retry_elsewhere=False)
        return result

    def _payment_result(self, status: int, answer: Mapping[str, Any]) -> PspResult:
        ref = answer.get("id") if isinstance(answer.get("id"), str) else None
        state = answer.get("status")
        amount = answer.get("amount")
        token = as_dict(answer.get("source")).get("id")
        if state == "Pending":
            redirect = as_dict(as_dict(answer.get("_links")).get("redirect"))
            return PspResult(
                Outcome.PENDING,
                ref,
                DeclineCode.AUTHENTICATION_REQUIRED,
                "Pending",
                http_status=status,
                amount=amount,
                action=redirect or None,
            )
        approved = answer.get("approved")
        if approved is True or (approved is None and state in _APPROVED_STATES):
            return PspResult(
                Outcome.APPROVED,
                ref,
                http_status=status,
                amount=amount,
                message=safe_text(state),
                token=token if isinstance(token, str) else None,
            )
        if approved is False or state == "Declined":
            return PspResult(
                Outcome.DECLINED,
                ref,
                response_code(answer.get("response_code")),
                safe_text(answer.get("response_summary") or state),
                http_status=status,
            )
        return unexpected(status, "payment")

    def parse_authorize(self, status: int, body: Any) -> PspResult:
        if status >= 300:
            return self._error(status, body)
        answer = as_dict(body)
        return replace(self._payment_result(status, answer), postcode_check=postcode_check(answer))

    def _parse_action(self, status: int, body: Any) -> PspResult:
        if status >= 300:
            return self._error(status, body)
        answer = as_dict(body)
        if isinstance(answer.get("action_id"), str):
            return PspResult(
                Outcome.APPROVED,
                answer["action_id"],
                http_status=status,
                message="accepted; the final state arrives by webhook",
            )
        return unexpected(status, "action")

    def parse_capture(self, status: int, body: Any) -> PspResult:
        return self._parse_action(status, body)

    def parse_void(self, status: int, body: Any) -> PspResult:
        return self._parse_action(status, body)

    def parse_refund(self, status: int, body: Any) -> PspResult:
        return self._parse_action(status, body)

    def parse_verify(self, status: int, body: Any) -> PspResult:
        return self.parse_authorize(status, body)

    def parse_tokenize(self, status: int, body: Any) -> PspResult:
        result = self.parse_authorize(status, body)
        if result.outcome is Outcome.APPROVED and result.token is None:
            return unexpected(status, "tokenization")
        return result

    def parse_status(self, status: int, body: Any) -> PspResult:
        if status >= 300:
            return self._error(status, body)
        answer = as_dict(body)
        data = answer.get("data")
        if data is None and "id" in answer:
            return self._payment_result(status, answer)
        if not isinstance(data, list):
            return unexpected(status, "payment list")
        results = [self._payment_result(status, p) for p in data if isinstance(p, dict)]
        return pick_status(results, not_found_is_final=False)

    def scrub(self, transcript: Any) -> Any:
        return _SCRUB(transcript)
