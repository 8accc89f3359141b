"""The sandbox PSP: the simulator's own small JSON API, and the embedded default.

Its contract (the simulator in `transact.psp.simulator` serves it under `/sandbox`):

* `POST /sandbox/payments` `{reference, amount, currency, capture, description?,
  interaction: ecommerce|moto, store?, card: {number, exp_month, exp_year, cvc?,
  holder?, postcode?}}` → `201` payment; with `store: true` an approved payment carries the
  card's `token`. Charging a stored card is the same call with `{..., token,
  interaction: merchant_initiated}` instead of the card.
* `POST /sandbox/payments/{id}/capture` `{amount}` → `200` payment
* `POST /sandbox/payments/{id}/void` `{}` → `200` payment
* `POST /sandbox/payments/{id}/refunds` `{amount}` → `201 {id, payment_id, status, amount}`
* `POST /sandbox/verifications` `{reference, card}` → `201` payment (nothing held)
* `POST /sandbox/tokens` `{reference, card}` → `201 {token, brand, last4}`
* `GET /sandbox/payments?reference=R` → `200 {data: [payment, ...]}`

A payment is `{id, reference, status: approved|declined|pending, decline_code?,
message?, amount, currency, state, authorized, captured, refunded, action?, token?,
postcode_check?}` (`postcode_check`: pass|fail|unavailable, the address check of the
card's `postcode`; absent when none was sent);
`decline_code` already uses our normalized names. Errors are
`{"error": {"code", "message"}}`: `401`, `404`, `409` (same Idempotency-Key
still running, or reused with another body), `422` (invalid request, amount or
state), `429`, `503` (refused before processing), `500` (may have processed).
Every POST takes an `Idempotency-Key` header; `Authorization: Bearer KEY` is
checked only when the simulator is given a key.

The sandbox keeps its state in one place and records a payment before it
answers, so "no payment under this reference" proves nothing was charged.
"""

from __future__ import annotations

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
    ALL_BRANDS,
    Scrubber,
    as_dict,
    http_error,
    pick_status,
    safe_text,
    unexpected,
)

_DECLINE_CODES = {code.value: code for code in DeclineCode}
_SCRUB = Scrubber(["number", "exp_month", "exp_year", "cvc", "holder", "postcode"])
_POSTCODE_CHECKS: dict[str, PostcodeCheck] = {
    "pass": "pass",
    "fail": "fail",
    "unavailable": "unavailable",
}


class SandboxConnector:
    name = "sandbox"
    brands = ALL_BRANDS
    currencies: frozenset[str] | None = None
    supports_status_query = True

    def __init__(self, base_url: str = "http://sandbox", api_key: str | None = None) -> None:
        self.base_url = base_url
        self._api_key = SensitiveStr(api_key) if api_key else None

    def __repr__(self) -> str:
        return f"SandboxConnector(base_url={self.base_url!r})"

    # --- requests ---------------------------------------------------------------

    def _headers(self, idempotency_key: str | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.reveal()}"
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        return headers

    @staticmethod
    def _card(card: Card) -> dict[str, Any]:
        body: dict[str, Any] = {
            "number": card.pan.reveal(),
            "exp_month": card.expiry_month,
            "exp_year": card.expiry_year,
        }
        if card.cvv is not None:
            body["cvc"] = card.cvv.reveal()
        if card.holder:
            body["holder"] = card.holder
        if card.postcode:
            body["postcode"] = card.postcode
        return body

    def _order(self, order: Order) -> dict[str, Any]:
        body: dict[str, Any] = {
            "reference": order.reference,
            "amount": order.amount,
            "currency": order.currency.upper(),
            "capture": order.capture,
        }
        if order.description:
            body["description"] = order.description
        return body

    def authorize_call(self, order: Order) -> HttpCall:
        if order.card is None:
            if order.token is not None:
                return self.charge_token_call(order)
            raise ValueError("an order needs a card or a token")
        body = self._order(order)
        body["card"] = self._card(order.card)
        body["interaction"] = (
            Interaction.MOTO.value
            if order.interaction is Interaction.MOTO
            else Interaction.ECOMMERCE.value
        )
        if order.store:
            body["store"] = True
        if order.return_url:
            body["return_url"] = order.return_url
        return HttpCall("POST", "/sandbox/payments", self._headers(order.idempotency_key), body)

    def charge_token_call(self, order: Order) -> HttpCall:
        if order.token is None or order.card is not None:
            raise ValueError("a stored-card charge needs a token and no card")
        body = self._order(order)
        body["token"] = order.token
        body["interaction"] = Interaction.MERCHANT_INITIATED.value
        return HttpCall("POST", "/sandbox/payments", self._headers(order.idempotency_key), body)

    def capture_call(
        self, psp_reference: str, amount: int, currency: str, idempotency_key: str
    ) -> HttpCall:
        return HttpCall(
            "POST",
            f"/sandbox/payments/{quote(psp_reference, safe='')}/capture",
            self._headers(idempotency_key),
            {"amount": amount, "currency": currency.upper()},
        )

    def void_call(self, psp_reference: str, idempotency_key: str) -> HttpCall:
        return HttpCall(
            "POST",
            f"/sandbox/payments/{quote(psp_reference, safe='')}/void",
            self._headers(idempotency_key),
            {},
        )

    def refund_call(
        self, psp_reference: str, amount: int, currency: str, idempotency_key: str
    ) -> HttpCall:
        return HttpCall(
            "POST",
            f"/sandbox/payments/{quote(psp_reference, safe='')}/refunds",
            self._headers(idempotency_key),
            {"amount": amount, "currency": currency.upper()},
        )

    def verify_call(self, order: Order) -> HttpCall:
        if order.card is None:
            raise ValueError("verification needs a card")
        body = {"reference": order.reference, "card": self._card(order.card)}
        return HttpCall(
            "POST", "/sandbox/verifications", self._headers(order.idempotency_key), body
        )

    def tokenize_call(self, card: Card, reference: str, idempotency_key: str) -> HttpCall:
        body = {"reference": reference, "card": self._card(card)}
        return HttpCall("POST", "/sandbox/tokens", self._headers(idempotency_key), body)

    def keep_token_call(self, token: str, reference: str, idempotency_key: str) -> HttpCall | None:
        return None  # a sandbox token is reusable as it is

    def parse_keep_token(self, status: int, body: Any) -> PspResult:
        return unexpected(status, "token")

    def status_call(self, reference: str, psp_reference: str | None) -> HttpCall:
        # By our reference even when the PSP's id is known: it also finds a
        # second payment a retry may have made under the same reference.
        return HttpCall(
            "GET", f"/sandbox/payments?reference={quote(reference, safe='')}", self._headers()
        )

    # --- answers ----------------------------------------------------------------

    def _error(self, status: int, body: Any) -> PspResult:
        error = as_dict(as_dict(body).get("error"))
        return http_error(status, safe_text(error.get("message") or error.get("code")))

    def _payment(self, status: int, body: dict[str, Any]) -> PspResult:
        outcome = body.get("status")
        psp_reference = body.get("id")
        amount = body.get("amount")
        refunded = body.get("refunded")
        if outcome == "approved":
            token = body.get("token")
            return PspResult(
                Outcome.APPROVED,
                psp_reference,
                http_status=status,
                amount=amount,
                message=safe_text(body.get("state")),
                token=token if isinstance(token, str) else None,
                refunded=refunded if isinstance(refunded, int) else None,
            )
        if outcome == "declined":
            code = _DECLINE_CODES.get(str(body.get("decline_code")), DeclineCode.CARD_DECLINED)
            return PspResult(
                Outcome.DECLINED,
                psp_reference,
                code,
                safe_text(body.get("message")),
                http_status=status,
                amount=amount,
            )
        if outcome == "pending":
            return PspResult(
                Outcome.PENDING,
                psp_reference,
                DeclineCode.AUTHENTICATION_REQUIRED,
                safe_text(body.get("message")),
                http_status=status,
                amount=amount,
                action=as_dict(body.get("action")) or None,
            )
        return unexpected(status, "payment")

    def parse_authorize(self, status: int, body: Any) -> PspResult:
        if 200 <= status < 300 and isinstance(body, dict):
            check = _POSTCODE_CHECKS.get(str(body.get("postcode_check")))
            return replace(self._payment(status, body), postcode_check=check)
        return self._error(status, body) if status >= 300 else unexpected(status, "payment")

    def _modification(self, status: int, body: Any) -> PspResult:
        if 200 <= status < 300 and isinstance(body, dict):
            if body.get("status") == "approved":
                return PspResult(
                    Outcome.APPROVED, body.get("id"), http_status=status, amount=body.get("amount")
                )
            return unexpected(status, "modification")
        return self._error(status, body) if status >= 300 else unexpected(status, "modification")

    def parse_capture(self, status: int, body: Any) -> PspResult:
        return self._modification(status, body)

    def parse_void(self, status: int, body: Any) -> PspResult:
        return self._modification(status, body)

    def parse_refund(self, status: int, body: Any) -> PspResult:
        return self._modification(status, body)

    def parse_verify(self, status: int, body: Any) -> PspResult:
        return self.parse_authorize(status, body)

    def parse_tokenize(self, status: int, body: Any) -> PspResult:
        if 200 <= status < 300 and isinstance(body, dict) and isinstance(body.get("token"), str):
            return PspResult(
                Outcome.APPROVED, body["token"], http_status=status, token=body["token"]
            )
        return self._error(status, body) if status >= 300 else unexpected(status, "token")

    def parse_status(self, status: int, body: Any) -> PspResult:
        if status >= 300:
            return self._error(status, body)
        data = as_dict(body).get("data")
        if not isinstance(data, list):
            return unexpected(status, "status")
        results = [self._payment(status, p) for p in data if isinstance(p, dict)]
        return pick_status(results, not_found_is_final=True)

    def scrub(self, transcript: Any) -> Any:
        return _SCRUB(transcript)
