"""Stripe: PaymentIntents confirmed at once with raw card data (form-encoded API).

* authorize: `POST /v1/payment_intents` with `payment_method_data[card][...]`
  (or `payment_method=pm_...` for a token), `confirm=true`,
  `capture_method=automatic|manual`, `metadata[reference]`. Sending raw card
  numbers needs Stripe's "raw card data" permission on the account.
* capture `POST /v1/payment_intents/{id}/capture` (`amount_to_capture`), void
  `POST /v1/payment_intents/{id}/cancel`, refund `POST /v1/refunds`
  (`payment_intent`, `amount`).
* verify: `POST /v1/setup_intents` confirmed with the card (no money moves).
* MOTO: a card given over the phone sets `payment_method_options[card][moto]=true`
  (the account needs Stripe's MOTO feature); it is exempt from 3-D Secure.
* tokenize: `POST /v1/payment_methods` (`type=card`), then `keep_token_call`:
  `POST /v1/customers` with `payment_method=pm_...` attaches it to a new Customer,
  because an unattached PaymentMethod can be charged once only. Our token is
  `"<cus_...>:<pm_...>"`. Stripe only checks the card when it is used.
* charge a stored token: `POST /v1/payment_intents` with `customer`,
  `payment_method`, `off_session=true`, `confirm=true` (merchant-initiated; an
  issuer that still wants the cardholder answers `authentication_required`).
* status: `GET /v1/payment_intents/{id}` when the PSP id is known (strongly
  consistent); else `GET /v1/payment_intents/search?query=metadata['reference']:'R'`.
  Stripe says search lags writes (normally under a minute), so "nothing found"
  does not prove no charge: `may_retry_elsewhere` stays False for it. Replaying
  the original request with the same Idempotency-Key is the stronger check:
  Stripe answers it with the first outcome.

Declines come as `402` with `error.type=card_error`: `error.decline_code` names the
issuer's reason when there is one, else `error.code` does.

Billing postcode (AVS): a card's postcode goes as
`payment_method_data[billing_details][address][postal_code]` (`billing_details[address]
[postal_code]` when tokenizing). The issuer's verdict is on the Charge, not the
PaymentIntent: the authorization asks `expand[]=latest_charge` and reads
`latest_charge.payment_method_details.card.checks.address_postal_code_check`
(`pass` / `fail` / `unavailable` / `unchecked`; null when no postcode went).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import quote, urlencode

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

DEFAULT_API_VERSION = "2024-06-20"

# `error.decline_code` (the issuer's reason) first, then `error.code`.
DECLINE_CODES: Mapping[str, DeclineCode] = {
    "generic_decline": DeclineCode.CARD_DECLINED,
    "card_declined": DeclineCode.CARD_DECLINED,
    "insufficient_funds": DeclineCode.INSUFFICIENT_FUNDS,
    "incorrect_cvc": DeclineCode.INCORRECT_CVC,
    "invalid_cvc": DeclineCode.INCORRECT_CVC,
    "expired_card": DeclineCode.EXPIRED_CARD,
    "do_not_honor": DeclineCode.DO_NOT_HONOR,
    "processing_error": DeclineCode.PROCESSING_ERROR,
    "issuer_not_available": DeclineCode.PROCESSING_ERROR,
    "try_again_later": DeclineCode.PROCESSING_ERROR,
    "authentication_required": DeclineCode.AUTHENTICATION_REQUIRED,
    "lost_card": DeclineCode.CARD_DECLINED,
    "stolen_card": DeclineCode.CARD_DECLINED,
    "pickup_card": DeclineCode.CARD_DECLINED,
    "fraudulent": DeclineCode.CARD_DECLINED,
    "restricted_card": DeclineCode.CARD_DECLINED,
    "card_velocity_exceeded": DeclineCode.CARD_DECLINED,
    "card_not_supported": DeclineCode.CARD_DECLINED,
    "currency_not_supported": DeclineCode.CARD_DECLINED,
    "transaction_not_allowed": DeclineCode.CARD_DECLINED,
}
ERROR_CODES: Mapping[str, DeclineCode] = {
    "card_declined": DeclineCode.CARD_DECLINED,
    "incorrect_cvc": DeclineCode.INCORRECT_CVC,
    "invalid_cvc": DeclineCode.INCORRECT_CVC,
    "expired_card": DeclineCode.EXPIRED_CARD,
    "invalid_expiry_month": DeclineCode.EXPIRED_CARD,
    "invalid_expiry_year": DeclineCode.EXPIRED_CARD,
    "processing_error": DeclineCode.PROCESSING_ERROR,
    "incorrect_number": DeclineCode.CARD_DECLINED,
    "invalid_number": DeclineCode.CARD_DECLINED,
    "authentication_required": DeclineCode.AUTHENTICATION_REQUIRED,
}

# PaymentIntent states after which money is held or moved, or may yet be.
_CHARGED = frozenset({"succeeded", "requires_capture", "processing", "requires_action"})

_SCRUB = Scrubber(["number", "exp_month", "exp_year", "cvc", "name", "postal_code"])

# `address_postal_code_check` as we name it; "unchecked" is Stripe's "not checked".
POSTCODE_CHECKS: Mapping[str, PostcodeCheck] = {
    "pass": "pass",
    "fail": "fail",
    "unavailable": "unavailable",
    "unchecked": "unavailable",
}


def decline_code(error: Mapping[str, Any]) -> DeclineCode:
    for field in ("decline_code", "code"):
        value = error.get(field)
        table = DECLINE_CODES if field == "decline_code" else ERROR_CODES
        if isinstance(value, str) and value in table:
            return table[value]
    return DeclineCode.CARD_DECLINED


def postcode_check(intent: Mapping[str, Any]) -> PostcodeCheck | None:
    """The postcode check of an intent's charge, when the charge came expanded."""
    charge = as_dict(intent.get("latest_charge"))
    card = as_dict(as_dict(charge.get("payment_method_details")).get("card"))
    checks = as_dict(card.get("checks"))
    value = checks.get("address_postal_code_check")
    return POSTCODE_CHECKS.get(value) if isinstance(value, str) else None


def split_token(token: str) -> tuple[str | None, str]:
    """Our Stripe token `"<cus_...>:<pm_...>"` (or a bare `pm_...`) as (customer, method)."""
    customer, sep, method = token.partition(":")
    if not sep:
        customer, method = "", token
    if not method or (sep and not customer):
        raise ValueError("a Stripe token is '<cus_...>:<pm_...>' or 'pm_...'")
    return customer or None, method


def _search_literal(value: str) -> str:
    # Stripe's query language: a string in single quotes, \ escapes ' and \.
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class StripeConnector:
    name = "stripe"
    brands = frozenset({"visa", "mastercard", "amex", "discover", "diners", "jcb", "unionpay"})
    currencies: frozenset[str] | None = None
    supports_status_query = True

    def __init__(
        self,
        secret_key: str,
        base_url: str = "https://api.stripe.com",
        api_version: str = DEFAULT_API_VERSION,
        return_url: str | None = None,
    ) -> None:
        if not secret_key:
            raise ValueError("stripe needs a secret key")
        self.base_url = base_url
        self.api_version = api_version
        self.return_url = return_url
        self._secret = SensitiveStr(secret_key)

    def __repr__(self) -> str:
        return f"StripeConnector(base_url={self.base_url!r})"

    # --- requests ---------------------------------------------------------------

    def _headers(self, idempotency_key: str | None = None) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {self._secret.reveal()}",
            "Stripe-Version": self.api_version,
        }
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        return headers

    def _post(self, path: str, form: dict[str, str], idempotency_key: str) -> HttpCall:
        return HttpCall("POST", path, self._headers(idempotency_key), form=form)

    @staticmethod
    def _card_form(prefix: str, card: Card) -> dict[str, str]:
        form = {
            f"{prefix}[number]": card.pan.reveal(),
            f"{prefix}[exp_month]": str(card.expiry_month),
            f"{prefix}[exp_year]": str(card.expiry_year),
        }
        if card.cvv is not None:
            form[f"{prefix}[cvc]"] = card.cvv.reveal()
        return form

    def _payment_method(self, card: Card) -> dict[str, str]:
        form = {"payment_method_data[type]": "card"}
        form |= self._card_form("payment_method_data[card]", card)
        if card.holder:
            form["payment_method_data[billing_details][name]"] = card.holder
        if card.postcode:
            form["payment_method_data[billing_details][address][postal_code]"] = card.postcode
        return form

    def _intent_form(self, order: Order) -> dict[str, str]:
        form = {
            "amount": str(order.amount),
            "currency": order.currency.lower(),
            "confirm": "true",
            "capture_method": "automatic" if order.capture else "manual",
            # Cards only: keeps Stripe from offering redirect methods, which would
            # make `return_url` mandatory on confirm.
            "payment_method_types[0]": "card",
            "metadata[reference]": order.reference,
        }
        if order.description:
            form["description"] = order.description
        return form

    def authorize_call(self, order: Order) -> HttpCall:
        if order.card is None:
            if order.token is not None:
                return self.charge_token_call(order)
            raise ValueError("an order needs a card or a token")
        form = self._intent_form(order)
        if order.return_url or self.return_url:
            form["return_url"] = order.return_url or self.return_url or ""
        if order.interaction is Interaction.MOTO:
            form["payment_method_options[card][moto]"] = "true"
        # `order.store` is met after the payment (tokenize, then keep_token_call): a
        # PaymentIntent saves its card only for a Customer that already exists.
        form |= self._payment_method(order.card)
        if order.card.postcode:
            # The address check's verdict lives on the charge: have it in the answer.
            form["expand[0]"] = "latest_charge"
        return self._post("/v1/payment_intents", form, order.idempotency_key)

    def charge_token_call(self, order: Order) -> HttpCall:
        if order.token is None or order.card is not None:
            raise ValueError("a stored-card charge needs a token and no card")
        customer, method = split_token(order.token)
        form = self._intent_form(order)
        form["payment_method"] = method
        if customer:
            form["customer"] = customer
        form["off_session"] = "true"
        return self._post("/v1/payment_intents", form, order.idempotency_key)

    def capture_call(
        self, psp_reference: str, amount: int, currency: str, idempotency_key: str
    ) -> HttpCall:
        path = f"/v1/payment_intents/{quote(psp_reference, safe='')}/capture"
        return self._post(path, {"amount_to_capture": str(amount)}, idempotency_key)

    def void_call(self, psp_reference: str, idempotency_key: str) -> HttpCall:
        path = f"/v1/payment_intents/{quote(psp_reference, safe='')}/cancel"
        return self._post(path, {}, idempotency_key)

    def refund_call(
        self, psp_reference: str, amount: int, currency: str, idempotency_key: str
    ) -> HttpCall:
        form = {"payment_intent": psp_reference, "amount": str(amount)}
        return self._post("/v1/refunds", form, idempotency_key)

    def verify_call(self, order: Order) -> HttpCall:
        if order.card is None:
            raise ValueError("verification needs a card")
        form = {
            "confirm": "true",
            "usage": "off_session",
            "payment_method_types[0]": "card",
            "metadata[reference]": order.reference,
        }
        if order.return_url or self.return_url:
            form["return_url"] = order.return_url or self.return_url or ""
        form |= self._payment_method(order.card)
        return self._post("/v1/setup_intents", form, order.idempotency_key)

    def tokenize_call(self, card: Card, reference: str, idempotency_key: str) -> HttpCall:
        form = {"type": "card", "metadata[reference]": reference}
        form |= self._card_form("card", card)
        if card.holder:
            form["billing_details[name]"] = card.holder
        if card.postcode:
            form["billing_details[address][postal_code]"] = card.postcode
        return self._post("/v1/payment_methods", form, idempotency_key)

    def keep_token_call(self, token: str, reference: str, idempotency_key: str) -> HttpCall | None:
        customer, method = split_token(token)
        if customer:
            return None  # already attached
        form = {
            "payment_method": method,
            "invoice_settings[default_payment_method]": method,
            "metadata[reference]": reference,
        }
        return self._post("/v1/customers", form, idempotency_key)

    def status_call(self, reference: str, psp_reference: str | None) -> HttpCall:
        if psp_reference:
            return HttpCall(
                "GET", f"/v1/payment_intents/{quote(psp_reference, safe='')}", self._headers()
            )
        query = urlencode({"query": f"metadata['reference']:{_search_literal(reference)}"})
        return HttpCall("GET", f"/v1/payment_intents/search?{query}", self._headers())

    # --- answers ----------------------------------------------------------------

    def _error(self, status: int, body: Any) -> PspResult:
        error = as_dict(as_dict(body).get("error"))
        message = safe_text(error.get("message") or error.get("code"))
        intent = as_dict(error.get("payment_intent")) or as_dict(error.get("setup_intent"))
        reference = intent.get("id") if isinstance(intent.get("id"), str) else None
        if status == 402 or error.get("type") == "card_error":
            return PspResult(
                Outcome.DECLINED,
                reference,
                decline_code(error),
                message,
                http_status=status,
            )
        result = http_error(status, message, psp_reference=reference)
        # An idempotency error means this key already ran with other parameters,
        # and an intent that got past confirmation may hold money: either way
        # this attempt does not prove "nothing charged".
        if error.get("type") == "idempotency_error" or intent.get("status") in _CHARGED:
            return replace(result, may_retry_elsewhere=False)
        return result

    def _intent(self, status: int, intent: Mapping[str, Any]) -> PspResult:
        state = intent.get("status")
        ref = intent.get("id") if isinstance(intent.get("id"), str) else None
        if state == "succeeded":
            amount = intent.get("amount_received") or intent.get("amount")
            return PspResult(
                Outcome.APPROVED, ref, http_status=status, amount=amount, message="succeeded"
            )
        if state == "requires_capture":
            amount = intent.get("amount_capturable") or intent.get("amount")
            return PspResult(
                Outcome.APPROVED, ref, http_status=status, amount=amount, message="requires_capture"
            )
        if state == "requires_action":
            return PspResult(
                Outcome.PENDING,
                ref,
                DeclineCode.AUTHENTICATION_REQUIRED,
                "requires_action",
                http_status=status,
                amount=intent.get("amount"),
                action=as_dict(intent.get("next_action")) or None,
            )
        if state == "processing":
            return PspResult(
                Outcome.PENDING,
                ref,
                message="processing",
                http_status=status,
                amount=intent.get("amount"),
            )
        if state == "requires_payment_method":
            error = as_dict(intent.get("last_payment_error"))
            if error:
                return PspResult(
                    Outcome.DECLINED,
                    ref,
                    decline_code(error),
                    safe_text(error.get("message")),
                    http_status=status,
                )
        if state in ("requires_payment_method", "requires_confirmation", "canceled"):
            # Not confirmed, or cancelled: no money is held under this intent.
            return PspResult(
                Outcome.ERROR,
                ref,
                DeclineCode.PROCESSING_ERROR,
                str(state),
                may_retry_elsewhere=True,
                http_status=status,
            )
        return unexpected(status, "payment intent")

    def parse_authorize(self, status: int, body: Any) -> PspResult:
        if status >= 300:
            # A decline carries the intent, and with it the charge's checks.
            intent = as_dict(as_dict(as_dict(body).get("error")).get("payment_intent"))
            return replace(self._error(status, body), postcode_check=postcode_check(intent))
        if as_dict(body).get("object") != "payment_intent":
            return unexpected(status, "payment intent")
        return replace(self._intent(status, body), postcode_check=postcode_check(body))

    def parse_capture(self, status: int, body: Any) -> PspResult:
        if status >= 300:
            return self._error(status, body)
        intent = as_dict(body)
        if intent.get("status") == "succeeded":
            return PspResult(
                Outcome.APPROVED,
                intent.get("id"),
                http_status=status,
                amount=intent.get("amount_received"),
            )
        return unexpected(status, "capture")

    def parse_void(self, status: int, body: Any) -> PspResult:
        if status >= 300:
            return self._error(status, body)
        intent = as_dict(body)
        if intent.get("status") == "canceled":
            return PspResult(
                Outcome.APPROVED, intent.get("id"), http_status=status, message="canceled"
            )
        return unexpected(status, "cancel")

    def parse_refund(self, status: int, body: Any) -> PspResult:
        if status >= 300:
            return self._error(status, body)
        refund = as_dict(body)
        ref, amount, state = refund.get("id"), refund.get("amount"), refund.get("status")
        if state == "succeeded":
            return PspResult(Outcome.APPROVED, ref, http_status=status, amount=amount)
        if state in ("pending", "requires_action"):
            return PspResult(
                Outcome.PENDING, ref, message=str(state), http_status=status, amount=amount
            )
        if state in ("failed", "canceled"):
            return PspResult(
                Outcome.DECLINED,
                ref,
                DeclineCode.PROCESSING_ERROR,
                safe_text(refund.get("failure_reason") or state),
                http_status=status,
            )
        return unexpected(status, "refund")

    def parse_verify(self, status: int, body: Any) -> PspResult:
        if status >= 300:
            return self._error(status, body)
        intent = as_dict(body)
        ref = intent.get("id")
        method = intent.get("payment_method")
        token = method if isinstance(method, str) else as_dict(method).get("id")
        if intent.get("status") == "succeeded":
            return PspResult(Outcome.APPROVED, ref, http_status=status, token=token)
        if intent.get("status") == "requires_action":
            return PspResult(
                Outcome.PENDING,
                ref,
                DeclineCode.AUTHENTICATION_REQUIRED,
                "requires_action",
                http_status=status,
                action=as_dict(intent.get("next_action")) or None,
            )
        error = as_dict(intent.get("last_setup_error"))
        if error:
            return PspResult(
                Outcome.DECLINED,
                ref,
                decline_code(error),
                safe_text(error.get("message")),
                http_status=status,
            )
        return unexpected(status, "setup intent")

    def parse_tokenize(self, status: int, body: Any) -> PspResult:
        if status >= 300:
            return self._error(status, body)
        method = as_dict(body)
        token = method.get("id")
        if isinstance(token, str) and token.startswith("pm_"):
            return PspResult(Outcome.APPROVED, token, http_status=status, token=token)
        return unexpected(status, "payment method")

    def parse_keep_token(self, status: int, body: Any) -> PspResult:
        if status >= 300:
            return self._error(status, body)
        customer = as_dict(body)
        method = as_dict(customer.get("invoice_settings")).get("default_payment_method")
        cid = customer.get("id")
        if (
            isinstance(cid, str)
            and cid.startswith("cus_")
            and isinstance(method, str)
            and method.startswith("pm_")
        ):
            token = f"{cid}:{method}"
            return PspResult(Outcome.APPROVED, cid, http_status=status, token=token)
        return unexpected(status, "customer")

    def parse_status(self, status: int, body: Any) -> PspResult:
        if status >= 300:
            return self._error(status, body)
        answer = as_dict(body)
        if answer.get("object") == "payment_intent":
            return self._intent(status, answer)
        data = answer.get("data")
        if answer.get("object") != "search_result" or not isinstance(data, list):
            return unexpected(status, "search")
        results = [self._intent(status, pi) for pi in data if isinstance(pi, dict)]
        return pick_status(results, not_found_is_final=False)

    def scrub(self, transcript: Any) -> Any:
        return _SCRUB(transcript)
