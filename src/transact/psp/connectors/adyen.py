"""Adyen: Checkout API v71, raw card data (`paymentMethod.type=scheme`), JSON.

* authorize: `POST /v71/payments`; a sale sets `captureDelayHours: 0`, an
  authorization only sets `additionalData.manualCapture: "true"`, so neither
  depends on the merchant account's capture setting. `returnUrl` (required by
  Adyen) comes from the connector's settings.
* `resultCode`: `Authorised` → approved; `Refused` → declined, mapped from
  `refusalReasonCode` (Adyen's numbering: 12 "Not enough balance", 24 "CVC
  Declined", 6 "Expired Card", ...), then the issuer's raw ISO 8583 code in
  `additionalData.refusalReasonRaw` ("51", "05", ...), then the reason's words;
  `RedirectShopper` / `IdentifyShopper` / `ChallengeShopper` → pending with the
  `action`; `Pending` / `Received` → pending; `Cancelled` → error, nothing
  charged; `Error` → error, not provably uncharged.
* capture / void / refund: `POST /v71/payments/{pspReference}/captures|cancels|refunds`.
  Adyen answers `201 {status: "received"}`: it accepted the request and tells
  the final result later by webhook (CAPTURE, CANCELLATION, REFUND). We read
  `received` as **approved** (accepted by the PSP), with that said in the
  message; a webhook that reports failure must be reconciled by the core.
  Our idempotency key is the modification's `reference`.
* MOTO: a card given over the phone is `shopperInteraction: "Moto"` (no 3-D
  Secure); a pay-by-link card is `"Ecommerce"`.
* saving the card with the payment (`Order.store`): the authorization itself
  carries `storePaymentMethod: true`, `shopperReference` and
  `recurringProcessingModel: UnscheduledCardOnFile`; the token comes back in the
  answer's `additionalData` as below, so no second call is needed.
* verify: a zero-value `/payments` authorization.
* tokenize: a zero-value `/payments` with `storePaymentMethod: true`,
  `shopperReference` (our tokenize reference) and
  `recurringProcessingModel: UnscheduledCardOnFile`. Adyen binds the stored
  method to the shopper, so the token we return is
  `"<shopperReference>:<storedPaymentMethodId>"`, read from
  `additionalData["tokenization.storedPaymentMethodId"]` (or the older
  `recurring.recurringDetailReference`). Charging it sends
  `paymentMethod.storedPaymentMethodId`, the shopper reference,
  `shopperInteraction: ContAuth`.
* status: **Adyen's Checkout API cannot find a payment by merchant reference**.
  `supports_status_query` is False unless the connector is built with
  `status_query=True`, which only the simulator honours: it serves a test-only
  `GET /v71/payments?reference=R` answering `{data: [<payments response>, ...]}`.
  Against real Adyen the core must not call `status_call`; an ambiguous failure
  there stays unresolved until the AUTHORISATION webhook arrives.
* billing postcode (AVS): the payment's top-level `billingAddress`. Adyen's
  `BillingAddress` requires `street`, `houseNumberOrName`, `city`, `postalCode` and
  `country`; we know the postcode only, so `country` is `"ZZ"` (Adyen's documented
  value for a country not collected) and the other three carry the placeholder
  `"N/A"` (what integrations that collect only a postcode send): the issuer then
  checks the postcode and reports the street as not matched or not checked. The
  verdict is `additionalData.avsResult` ("7 Both postal code and address match",
  "17 Postal code doesn't match, address not checked", ...): we read the postcode's
  half of its number (Adyen's avsResult table) and nothing else. The merchant
  account must have the AVS result enabled in its additional-data settings, or
  Adyen leaves it out (then `postcode_check` is None).
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
    ALL_BRANDS,
    Scrubber,
    as_dict,
    http_error,
    pick_status,
    safe_text,
    two_digits,
    unexpected,
)

API = "/v71"
DEFAULT_RETURN_URL = "https://localhost/transact/3ds-return"

# Adyen's refusalReasonCode values.
REFUSAL_CODES: Mapping[str, DeclineCode] = {
    "2": DeclineCode.CARD_DECLINED,  # Refused
    "3": DeclineCode.CARD_DECLINED,  # Referral
    "4": DeclineCode.PROCESSING_ERROR,  # Acquirer Error
    "5": DeclineCode.CARD_DECLINED,  # Blocked Card
    "6": DeclineCode.EXPIRED_CARD,  # Expired Card
    "7": DeclineCode.CARD_DECLINED,  # Invalid Amount
    "8": DeclineCode.CARD_DECLINED,  # Invalid Card Number
    "9": DeclineCode.PROCESSING_ERROR,  # Issuer Unavailable
    "10": DeclineCode.CARD_DECLINED,  # Not supported
    "11": DeclineCode.AUTHENTICATION_REQUIRED,  # 3D Not Authenticated
    "12": DeclineCode.INSUFFICIENT_FUNDS,  # Not enough balance
    "14": DeclineCode.CARD_DECLINED,  # Acquirer Fraud
    "20": DeclineCode.CARD_DECLINED,  # FRAUD
    "22": DeclineCode.CARD_DECLINED,  # FRAUD-CANCELLED
    "23": DeclineCode.CARD_DECLINED,  # Transaction Not Permitted
    "24": DeclineCode.INCORRECT_CVC,  # CVC Declined
    "25": DeclineCode.CARD_DECLINED,  # Restricted Card
    "27": DeclineCode.CARD_DECLINED,  # Declined Non Generic
    "28": DeclineCode.CARD_DECLINED,  # Withdrawal amount exceeded
    "29": DeclineCode.CARD_DECLINED,  # Withdrawal count exceeded
    "31": DeclineCode.CARD_DECLINED,  # Issuer Suspected Fraud
    "38": DeclineCode.AUTHENTICATION_REQUIRED,  # Authentication required
}
# The issuer's ISO 8583 answer, when Adyen's own reason is the generic one.
RAW_CODES: Mapping[str, DeclineCode] = {
    "05": DeclineCode.DO_NOT_HONOR,
    "51": DeclineCode.INSUFFICIENT_FUNDS,
    "54": DeclineCode.EXPIRED_CARD,
    "N7": DeclineCode.INCORRECT_CVC,
    "82": DeclineCode.INCORRECT_CVC,
    "91": DeclineCode.PROCESSING_ERROR,
    "96": DeclineCode.PROCESSING_ERROR,
}
REFUSAL_REASONS: Mapping[str, DeclineCode] = {
    "refused": DeclineCode.CARD_DECLINED,
    "not enough balance": DeclineCode.INSUFFICIENT_FUNDS,
    "cvc declined": DeclineCode.INCORRECT_CVC,
    "expired card": DeclineCode.EXPIRED_CARD,
    "do not honor": DeclineCode.DO_NOT_HONOR,
    "acquirer error": DeclineCode.PROCESSING_ERROR,
    "issuer unavailable": DeclineCode.PROCESSING_ERROR,
    "authentication required": DeclineCode.AUTHENTICATION_REQUIRED,
}
# `additionalData.avsResult` starts with Adyen's number for the verdict; only what it
# says of the postal code counts (the street we send is a placeholder). Numbers that
# say nothing of it (unknown, unavailable, not supported, no data, not checked, address
# or name only) are "unavailable".
AVS_POSTCODE_PASS = frozenset({"6", "7", "14", "15", "19", "20", "23", "24"})
AVS_POSTCODE_FAIL = frozenset({"1", "2", "16", "17", "26"})
ADDRESS_UNKNOWN = "N/A"  # a BillingAddress field Adyen requires and we do not collect
COUNTRY_UNKNOWN = "ZZ"  # Adyen's value for a country not collected


def billing_address(postcode: str) -> dict[str, str]:
    """The `billingAddress` of a card whose postcode is all we know of the address."""
    return {
        "street": ADDRESS_UNKNOWN,
        "houseNumberOrName": ADDRESS_UNKNOWN,
        "city": ADDRESS_UNKNOWN,
        "postalCode": postcode,
        "country": COUNTRY_UNKNOWN,
    }


def postcode_check(answer: Mapping[str, Any]) -> PostcodeCheck | None:
    """The postcode's half of `additionalData.avsResult`; None when Adyen sent none."""
    result = as_dict(answer.get("additionalData")).get("avsResult")
    if not isinstance(result, str) or not result.strip():
        return None
    number = result.split()[0]
    if number in AVS_POSTCODE_PASS:
        return "pass"
    if number in AVS_POSTCODE_FAIL:
        return "fail"
    return "unavailable"


_ACTION_CODES = frozenset(
    {"RedirectShopper", "IdentifyShopper", "ChallengeShopper", "PresentToShopper"}
)
_SCRUB = Scrubber(
    [
        "number",
        "expiryMonth",
        "expiryYear",
        "cvc",
        "holderName",
        "postalCode",
        # Echoed back in additionalData when the account asks for it.
        "billingAddress.postalCode",
        "encryptedCardNumber",
        "encryptedExpiryMonth",
        "encryptedExpiryYear",
        "encryptedSecurityCode",
    ]
)


def refusal_code(answer: Mapping[str, Any]) -> DeclineCode:
    code = REFUSAL_CODES.get(str(answer.get("refusalReasonCode", "")))
    if code is not None and code is not DeclineCode.CARD_DECLINED:
        return code
    raw = str(as_dict(answer.get("additionalData")).get("refusalReasonRaw", ""))
    # "51 : Insufficient funds", "DECLINED 51", or just "51".
    for token in raw.replace(":", " ").split():
        if token.upper() in RAW_CODES:
            return RAW_CODES[token.upper()]
    if code is not None:
        return code
    reason = str(answer.get("refusalReason", "")).strip().lower()
    return REFUSAL_REASONS.get(reason, DeclineCode.CARD_DECLINED)


def split_token(token: str) -> tuple[str, str]:
    """`"<shopperReference>:<storedPaymentMethodId>"` into its two parts."""
    shopper, sep, stored = token.rpartition(":")
    if not sep or not shopper or not stored:
        raise ValueError("an Adyen token is '<shopperReference>:<storedPaymentMethodId>'")
    return shopper, stored


def stored_token(answer: Mapping[str, Any]) -> str | None:
    """Our token for the method an answer says Adyen stored, or None when it stored none."""
    extra = as_dict(answer.get("additionalData"))
    stored = extra.get("tokenization.storedPaymentMethodId") or extra.get(
        "recurring.recurringDetailReference"
    )
    shopper = extra.get("tokenization.shopperReference") or extra.get("recurring.shopperReference")
    if not isinstance(stored, str) or not isinstance(shopper, str) or not stored or not shopper:
        return None
    return f"{shopper}:{stored}"


class AdyenConnector:
    name = "adyen"
    brands = ALL_BRANDS
    currencies: frozenset[str] | None = None

    def __init__(
        self,
        api_key: str,
        merchant_account: str,
        base_url: str = "https://checkout-test.adyen.com",
        return_url: str = DEFAULT_RETURN_URL,
        status_query: bool = False,
        verification_currency: str = "EUR",
    ) -> None:
        if not api_key or not merchant_account:
            raise ValueError("adyen needs an API key and a merchant account")
        self.base_url = base_url
        self.merchant_account = merchant_account
        self.return_url = return_url
        self.verification_currency = verification_currency
        # Simulator only: see the module docstring.
        self.supports_status_query = status_query
        self._api_key = SensitiveStr(api_key)

    def __repr__(self) -> str:
        return f"AdyenConnector(base_url={self.base_url!r}, merchant={self.merchant_account!r})"

    # --- requests ---------------------------------------------------------------

    def _headers(self, idempotency_key: str | None = None) -> dict[str, str]:
        headers = {"X-API-Key": self._api_key.reveal(), "Content-Type": "application/json"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        return headers

    @staticmethod
    def _card(card: Card) -> dict[str, Any]:
        method: dict[str, Any] = {
            "type": "scheme",
            "number": card.pan.reveal(),
            "expiryMonth": two_digits(card.expiry_month),
            "expiryYear": str(card.expiry_year),
        }
        if card.cvv is not None:
            method["cvc"] = card.cvv.reveal()
        if card.holder:
            method["holderName"] = card.holder
        return method

    @staticmethod
    def _add_billing_address(body: dict[str, Any], card: Card) -> None:
        if card.postcode:
            body["billingAddress"] = billing_address(card.postcode)

    def _payment(self, reference: str, amount: int, currency: str) -> dict[str, Any]:
        return {
            "amount": {"value": amount, "currency": currency.upper()},
            "reference": reference,
            "merchantAccount": self.merchant_account,
            "returnUrl": self.return_url,
            "shopperInteraction": "Ecommerce",
        }

    def _order(self, order: Order) -> dict[str, Any]:
        body = self._payment(order.reference, order.amount, order.currency)
        if order.return_url:
            body["returnUrl"] = order.return_url
        if order.capture:
            body["captureDelayHours"] = 0
        else:
            body["additionalData"] = {"manualCapture": "true"}
        if order.description:
            body["shopperStatement"] = order.description[:22]
        return body

    def authorize_call(self, order: Order) -> HttpCall:
        if order.card is None:
            if order.token is not None:
                return self.charge_token_call(order)
            raise ValueError("an order needs a card or a token")
        body = self._order(order)
        body["paymentMethod"] = self._card(order.card)
        self._add_billing_address(body, order.card)
        if order.interaction is Interaction.MOTO:
            body["shopperInteraction"] = "Moto"
        if order.store:
            body["storePaymentMethod"] = True
            body["shopperReference"] = order.shopper_reference or order.reference
            body["recurringProcessingModel"] = "UnscheduledCardOnFile"
        return HttpCall("POST", f"{API}/payments", self._headers(order.idempotency_key), body)

    def charge_token_call(self, order: Order) -> HttpCall:
        if order.token is None or order.card is not None:
            raise ValueError("a stored-card charge needs a token and no card")
        shopper, stored = split_token(order.token)
        body = self._order(order)
        body["paymentMethod"] = {"type": "scheme", "storedPaymentMethodId": stored}
        body["shopperReference"] = shopper
        body["shopperInteraction"] = "ContAuth"
        body["recurringProcessingModel"] = "UnscheduledCardOnFile"
        return HttpCall("POST", f"{API}/payments", self._headers(order.idempotency_key), body)

    def _modification(
        self,
        psp_reference: str,
        kind: str,
        idempotency_key: str,
        amount: int | None = None,
        currency: str | None = None,
    ) -> HttpCall:
        body: dict[str, Any] = {
            "merchantAccount": self.merchant_account,
            "reference": idempotency_key,
        }
        if amount is not None and currency is not None:
            body["amount"] = {"value": amount, "currency": currency.upper()}
        path = f"{API}/payments/{quote(psp_reference, safe='')}/{kind}"
        return HttpCall("POST", path, self._headers(idempotency_key), body)

    def capture_call(
        self, psp_reference: str, amount: int, currency: str, idempotency_key: str
    ) -> HttpCall:
        return self._modification(psp_reference, "captures", idempotency_key, amount, currency)

    def void_call(self, psp_reference: str, idempotency_key: str) -> HttpCall:
        return self._modification(psp_reference, "cancels", idempotency_key)

    def refund_call(
        self, psp_reference: str, amount: int, currency: str, idempotency_key: str
    ) -> HttpCall:
        return self._modification(psp_reference, "refunds", idempotency_key, amount, currency)

    def verify_call(self, order: Order) -> HttpCall:
        if order.card is None:
            raise ValueError("verification needs a card")
        body = self._payment(order.reference, 0, order.currency)
        body["paymentMethod"] = self._card(order.card)
        self._add_billing_address(body, order.card)
        return HttpCall("POST", f"{API}/payments", self._headers(order.idempotency_key), body)

    def tokenize_call(self, card: Card, reference: str, idempotency_key: str) -> HttpCall:
        body = self._payment(reference, 0, self.verification_currency)
        body["paymentMethod"] = self._card(card)
        self._add_billing_address(body, card)
        body["storePaymentMethod"] = True
        body["shopperReference"] = reference
        body["recurringProcessingModel"] = "UnscheduledCardOnFile"
        return HttpCall("POST", f"{API}/payments", self._headers(idempotency_key), body)

    def keep_token_call(self, token: str, reference: str, idempotency_key: str) -> HttpCall | None:
        return None  # Adyen keeps the stored method with the shopper already

    def parse_keep_token(self, status: int, body: Any) -> PspResult:
        return unexpected(status, "stored payment method")

    def status_call(self, reference: str, psp_reference: str | None) -> HttpCall:
        # Simulator only (supports_status_query): real Adyen has no such lookup.
        return HttpCall(
            "GET", f"{API}/payments?reference={quote(reference, safe='')}", self._headers()
        )

    # --- answers ----------------------------------------------------------------

    def _error(self, status: int, body: Any) -> PspResult:
        answer = as_dict(body)
        message = safe_text(answer.get("message") or answer.get("errorType"))
        reference = (
            answer.get("pspReference") if isinstance(answer.get("pspReference"), str) else None
        )
        result = http_error(status, message, psp_reference=reference)
        # 704: "request already processed or in progress" for this idempotency key.
        if str(answer.get("errorCode")) == "704":
            return replace(result, may_retry_elsewhere=False)
        return result

    def _result(self, status: int, answer: Mapping[str, Any]) -> PspResult:
        code = answer.get("resultCode")
        ref = answer.get("pspReference") if isinstance(answer.get("pspReference"), str) else None
        amount = as_dict(answer.get("amount")).get("value")
        if code == "Authorised":
            return PspResult(
                Outcome.APPROVED,
                ref,
                http_status=status,
                amount=amount,
                message=safe_text(answer.get("status")),
                token=stored_token(answer),
            )
        if code == "Refused":
            return PspResult(
                Outcome.DECLINED,
                ref,
                refusal_code(answer),
                safe_text(answer.get("refusalReason")),
                http_status=status,
            )
        if code in _ACTION_CODES:
            return PspResult(
                Outcome.PENDING,
                ref,
                DeclineCode.AUTHENTICATION_REQUIRED,
                str(code),
                http_status=status,
                amount=amount,
                action=as_dict(answer.get("action")) or None,
            )
        if code in ("Pending", "Received"):
            return PspResult(
                Outcome.PENDING, ref, message=str(code), http_status=status, amount=amount
            )
        if code == "Cancelled":
            # Cancelled before processing completed: no money moved.
            return PspResult(
                Outcome.ERROR,
                ref,
                DeclineCode.PROCESSING_ERROR,
                "Cancelled",
                may_retry_elsewhere=True,
                http_status=status,
            )
        if code == "Error":
            return PspResult(
                Outcome.ERROR,
                ref,
                DeclineCode.PROCESSING_ERROR,
                safe_text(answer.get("refusalReason") or "Error"),
                may_retry_elsewhere=False,
                http_status=status,
            )
        return unexpected(status, "payment")

    def parse_authorize(self, status: int, body: Any) -> PspResult:
        if status >= 300:
            return self._error(status, body)
        answer = as_dict(body)
        return replace(self._result(status, answer), postcode_check=postcode_check(answer))

    def _parse_modification(self, status: int, body: Any) -> PspResult:
        if status >= 300:
            return self._error(status, body)
        answer = as_dict(body)
        if answer.get("status") == "received":
            return PspResult(
                Outcome.APPROVED,
                answer.get("pspReference"),
                message="received; the final outcome arrives by webhook",
                http_status=status,
                amount=as_dict(answer.get("amount")).get("value"),
            )
        return unexpected(status, "modification")

    def parse_capture(self, status: int, body: Any) -> PspResult:
        return self._parse_modification(status, body)

    def parse_void(self, status: int, body: Any) -> PspResult:
        return self._parse_modification(status, body)

    def parse_refund(self, status: int, body: Any) -> PspResult:
        return self._parse_modification(status, body)

    def parse_verify(self, status: int, body: Any) -> PspResult:
        return self.parse_authorize(status, body)

    def parse_tokenize(self, status: int, body: Any) -> PspResult:
        result = self.parse_authorize(status, body)
        if result.outcome is not Outcome.APPROVED:
            return result
        if result.token is None:
            return unexpected(status, "tokenization")
        return result

    def parse_status(self, status: int, body: Any) -> PspResult:
        if status >= 300:
            return self._error(status, body)
        data = as_dict(body).get("data")
        if not isinstance(data, list):
            return unexpected(status, "status")
        results = [self._result(status, p) for p in data if isinstance(p, dict)]
        return pick_status(results, not_found_is_final=True)

    def scrub(self, transcript: Any) -> Any:
        return _SCRUB(transcript)
