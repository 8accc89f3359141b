"""Connectors without a network: what each builds, how each reads, what scrub leaves."""

from __future__ import annotations

import copy
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from transact.kernel.sensitive import Pan, SensitiveStr
from transact.psp.connectors import CONNECTORS, Connector, make
from transact.psp.connectors.adyen import AdyenConnector, refusal_code
from transact.psp.connectors.base import (
    Card,
    DeclineCode,
    HttpCall,
    Interaction,
    Order,
    Outcome,
    interaction_for,
)
from transact.psp.connectors.checkout import CheckoutConnector
from transact.psp.connectors.common import http_error, pick_status
from transact.psp.connectors.http import send
from transact.psp.connectors.sandbox import SandboxConnector
from transact.psp.connectors.stripe import StripeConnector

PAN = "4242424242424242"
CVV = "737"
CARD = Card(Pan(PAN), 3, 2030, SensitiveStr(CVV), holder="Ada Lovelace")


def order(**changes: Any) -> Order:
    base: dict[str, Any] = {
        "reference": "pay_123",
        "amount": 1250,
        "currency": "GBP",
        "idempotency_key": "idem-1",
        "card": CARD,
    }
    return Order(**(base | changes))


def stripe() -> StripeConnector:
    return StripeConnector("sk_test_abc", "http://stripe.test")


def adyen(**kw: Any) -> AdyenConnector:
    return AdyenConnector("adyen-key", "Merchant", "http://adyen.test", **kw)


def checkout(**kw: Any) -> CheckoutConnector:
    return CheckoutConnector("sk_sbox_abc", "http://checkout.test", **kw)


def every() -> list[Connector]:
    return [SandboxConnector(api_key="sbx-key"), stripe(), adyen(), checkout()]


# --- registry -----------------------------------------------------------------------


def test_registry_names_every_connector() -> None:
    assert set(CONNECTORS) == {"sandbox", "stripe", "adyen", "checkout"}
    for name, cls in CONNECTORS.items():
        assert getattr(cls, "name", None) == name


def test_make_builds_each_connector() -> None:
    built = make(
        "adyen", base_url="http://a", credentials={"api_key": "k", "merchant_account": "M"}
    )
    assert isinstance(built, AdyenConnector)
    assert built.base_url == "http://a"
    assert built.supports_status_query is False
    sim = make(
        "adyen",
        base_url="http://a",
        credentials={"api_key": "k", "merchant_account": "M"},
        options={"status_query": "true"},
    )
    assert sim.supports_status_query is True
    assert isinstance(make("sandbox", base_url="http://sandbox", credentials={}), SandboxConnector)


@pytest.mark.parametrize(
    ("name", "credentials", "options", "words"),
    [
        ("paypal", {}, None, "unknown PSP connector 'paypal'"),
        ("stripe", {}, None, "missing credentials: secret_key"),
        ("stripe", {"secret_key": ""}, None, "missing credentials: secret_key"),
        ("adyen", {"api_key": "k"}, None, "missing credentials: merchant_account"),
        ("checkout", {"secret_key": "sk_1", "sekret": "x"}, None, "unexpected credentials: sekret"),
        ("stripe", {"secret_key": "sk_1"}, {"colour": "red"}, "unknown options: colour"),
        ("adyen", {"api_key": "k", "merchant_account": "M"}, {"status_query": "maybe"}, "yes/no"),
    ],
)
def test_make_refuses_clearly(
    name: str, credentials: dict[str, str], options: dict[str, str] | None, words: str
) -> None:
    with pytest.raises(ValueError, match=words) as caught:
        make(name, base_url="http://x", credentials=credentials, options=options)
    assert "sk_1" not in str(caught.value)


def test_secrets_stay_out_of_reprs() -> None:
    for connector in every():
        assert "sk_" not in repr(connector)
        assert "adyen-key" not in repr(connector)
        assert "sbx-key" not in repr(connector)


def test_every_connector_declares_what_it_takes() -> None:
    for connector in every():
        assert connector.brands >= {"visa", "mastercard"}
        assert connector.currencies is None or all(len(c) == 3 for c in connector.currencies)
        assert isinstance(connector.supports_status_query, bool)


def test_an_order_without_card_or_token_is_a_programming_error() -> None:
    for connector in every():
        with pytest.raises(ValueError, match="card or a token"):
            connector.authorize_call(order(card=None))


# --- Stripe -------------------------------------------------------------------------


def test_stripe_sale_request() -> None:
    call = stripe().authorize_call(order(description="Order 7"))
    assert (call.method, call.path, call.json) == ("POST", "/v1/payment_intents", None)
    assert call.headers["Authorization"] == "Bearer sk_test_abc"
    assert call.headers["Idempotency-Key"] == "idem-1"
    assert call.headers["Stripe-Version"]
    assert call.form == {
        "amount": "1250",
        "currency": "gbp",
        "confirm": "true",
        "capture_method": "automatic",
        "payment_method_types[0]": "card",
        "metadata[reference]": "pay_123",
        "description": "Order 7",
        "payment_method_data[type]": "card",
        "payment_method_data[card][number]": PAN,
        "payment_method_data[card][exp_month]": "3",
        "payment_method_data[card][exp_year]": "2030",
        "payment_method_data[card][cvc]": CVV,
        "payment_method_data[billing_details][name]": "Ada Lovelace",
    }


def test_stripe_auth_only_and_token_requests() -> None:
    form = stripe().authorize_call(order(capture=False, card=None, token="pm_1")).form
    assert form is not None
    assert form["capture_method"] == "manual"
    assert form["payment_method"] == "pm_1"
    assert not any("[number]" in k for k in form)


def test_stripe_modification_requests() -> None:
    s = stripe()
    capture = s.capture_call("pi_1", 500, "GBP", "k1")
    assert (capture.path, capture.form) == (
        "/v1/payment_intents/pi_1/capture",
        {"amount_to_capture": "500"},
    )
    assert capture.headers["Idempotency-Key"] == "k1"
    assert s.void_call("pi_1", "k2").path == "/v1/payment_intents/pi_1/cancel"
    refund = s.refund_call("pi_1", 300, "GBP", "k3")
    assert (refund.path, refund.form) == (
        "/v1/refunds",
        {"payment_intent": "pi_1", "amount": "300"},
    )
    token = s.tokenize_call(CARD, "cust-9", "k4")
    assert token.path == "/v1/payment_methods"
    assert token.form is not None
    assert token.form["type"] == "card"
    assert token.form["card[number]"] == PAN
    verify = s.verify_call(order())
    assert verify.path == "/v1/setup_intents"


def test_stripe_status_by_reference_quotes_the_search() -> None:
    call = stripe().status_call("it's\\odd", None)
    url = urlsplit(call.path)
    assert (call.method, url.path) == ("GET", "/v1/payment_intents/search")
    assert parse_qs(url.query)["query"] == ["metadata['reference']:'it\\'s\\\\odd'"]
    assert "Idempotency-Key" not in call.headers
    assert stripe().status_call("r", "pi_9").path == "/v1/payment_intents/pi_9"


def _intent(status: str, **extra: Any) -> dict[str, Any]:
    return {"id": "pi_1", "object": "payment_intent", "amount": 1250, "status": status} | extra


@pytest.mark.parametrize(
    ("status", "outcome", "amount"),
    [
        ("succeeded", Outcome.APPROVED, 1250),
        ("requires_capture", Outcome.APPROVED, 1250),
        ("requires_action", Outcome.PENDING, 1250),
        ("processing", Outcome.PENDING, 1250),
    ],
)
def test_stripe_intent_states(status: str, outcome: Outcome, amount: int) -> None:
    body = _intent(
        status,
        amount_received=1250,
        amount_capturable=1250,
        next_action={"type": "redirect_to_url"},
    )
    result = stripe().parse_authorize(200, body)
    assert (result.outcome, result.psp_reference, result.amount) == (outcome, "pi_1", amount)
    if status == "requires_action":
        assert result.action == {"type": "redirect_to_url"}


@pytest.mark.parametrize(
    ("code", "decline_code", "expected"),
    [
        ("card_declined", "generic_decline", DeclineCode.CARD_DECLINED),
        ("card_declined", "insufficient_funds", DeclineCode.INSUFFICIENT_FUNDS),
        ("card_declined", "do_not_honor", DeclineCode.DO_NOT_HONOR),
        ("card_declined", "lost_card", DeclineCode.CARD_DECLINED),
        ("incorrect_cvc", None, DeclineCode.INCORRECT_CVC),
        ("expired_card", None, DeclineCode.EXPIRED_CARD),
        ("processing_error", None, DeclineCode.PROCESSING_ERROR),
        ("incorrect_number", None, DeclineCode.CARD_DECLINED),
        ("card_declined", "something_new", DeclineCode.CARD_DECLINED),
        ("authentication_required", "authentication_required", DeclineCode.AUTHENTICATION_REQUIRED),
    ],
)
def test_stripe_declines(code: str, decline_code: str | None, expected: DeclineCode) -> None:
    error: dict[str, Any] = {
        "type": "card_error",
        "code": code,
        "message": "Declined.",
        "payment_intent": _intent("requires_payment_method"),
    }
    if decline_code:
        error["decline_code"] = decline_code
    result = stripe().parse_authorize(402, {"error": error})
    assert (result.outcome, result.decline_code) == (Outcome.DECLINED, expected)
    assert result.psp_reference == "pi_1"
    assert result.may_retry_elsewhere is False


@pytest.mark.parametrize(
    ("status", "error", "retry"),
    [
        (400, {"type": "invalid_request_error", "code": "parameter_invalid"}, True),
        (400, {"type": "idempotency_error"}, False),
        (400, {"type": "invalid_request_error", "payment_intent": _intent("succeeded")}, False),
        (401, {"type": "invalid_request_error"}, True),
        (409, {"type": "idempotency_error"}, False),
        (429, {"type": "invalid_request_error", "code": "rate_limit"}, True),
        (500, {"type": "api_error"}, False),
        (502, {"type": "api_error"}, False),
        (503, {"type": "api_error"}, False),
    ],
)
def test_stripe_errors(status: int, error: dict[str, Any], retry: bool) -> None:
    result = stripe().parse_authorize(status, {"error": error})
    assert result.outcome is Outcome.ERROR
    assert result.may_retry_elsewhere is retry
    assert result.http_status == status


def test_stripe_unreadable_success_is_never_retried_elsewhere() -> None:
    for body in (None, "<html>", {"object": "charge"}):
        result = stripe().parse_authorize(200, body)
        assert (result.outcome, result.may_retry_elsewhere) == (Outcome.ERROR, False)


def test_stripe_other_answers() -> None:
    s = stripe()
    assert s.parse_capture(200, _intent("succeeded", amount_received=700)).amount == 700
    assert s.parse_void(200, _intent("canceled")).outcome is Outcome.APPROVED
    refund = {"id": "re_1", "object": "refund", "amount": 300, "status": "succeeded"}
    assert s.parse_refund(200, refund).outcome is Outcome.APPROVED
    assert s.parse_refund(200, refund | {"status": "pending"}).outcome is Outcome.PENDING
    assert s.parse_refund(200, refund | {"status": "failed"}).outcome is Outcome.DECLINED
    assert s.parse_tokenize(200, {"id": "pm_9", "object": "payment_method"}).token == "pm_9"
    seti = {
        "id": "seti_1",
        "object": "setup_intent",
        "status": "succeeded",
        "payment_method": "pm_2",
    }
    assert s.parse_verify(200, seti).token == "pm_2"


def test_stripe_search_picks_the_charge_and_distrusts_an_empty_answer() -> None:
    s = stripe()
    declined = _intent("requires_payment_method", last_payment_error={"code": "card_declined"}) | {
        "id": "pi_a"
    }
    approved = _intent("succeeded", amount_received=1250) | {"id": "pi_b"}
    found = s.parse_status(200, {"object": "search_result", "data": [declined, approved]})
    assert (found.outcome, found.psp_reference) == (Outcome.APPROVED, "pi_b")
    twice = s.parse_status(200, {"object": "search_result", "data": [approved, approved]})
    assert twice.message == "2 approved payments under this reference"
    empty = s.parse_status(200, {"object": "search_result", "data": []})
    assert (empty.decline_code, empty.may_retry_elsewhere) == (DeclineCode.NOT_FOUND, False)
    canceled = s.parse_status(200, _intent("canceled"))
    assert (canceled.outcome, canceled.may_retry_elsewhere) == (Outcome.ERROR, True)


# --- Adyen --------------------------------------------------------------------------


def test_adyen_sale_request() -> None:
    call = adyen(return_url="https://pay.example/return").authorize_call(order())
    assert (call.method, call.path, call.form) == ("POST", "/v71/payments", None)
    assert call.headers["X-API-Key"] == "adyen-key"
    assert call.headers["Idempotency-Key"] == "idem-1"
    assert call.json == {
        "amount": {"value": 1250, "currency": "GBP"},
        "reference": "pay_123",
        "merchantAccount": "Merchant",
        "returnUrl": "https://pay.example/return",
        "shopperInteraction": "Ecommerce",
        "captureDelayHours": 0,
        "paymentMethod": {
            "type": "scheme",
            "number": PAN,
            "expiryMonth": "03",
            "expiryYear": "2030",
            "cvc": CVV,
            "holderName": "Ada Lovelace",
        },
    }


def test_adyen_auth_only_token_and_modifications() -> None:
    a = adyen()
    auth = a.authorize_call(order(capture=False, currency="eur")).json
    assert auth["additionalData"] == {"manualCapture": "true"}
    assert "captureDelayHours" not in auth
    assert auth["amount"]["currency"] == "EUR"
    by_token = a.authorize_call(order(card=None, token="shop:er-1:ABC123")).json
    assert by_token["paymentMethod"] == {"type": "scheme", "storedPaymentMethodId": "ABC123"}
    assert (by_token["shopperReference"], by_token["shopperInteraction"]) == (
        "shop:er-1",
        "ContAuth",
    )
    with pytest.raises(ValueError, match="shopperReference"):
        a.authorize_call(order(card=None, token="no-separator"))
    capture = a.capture_call("PSP1", 500, "gbp", "k1")
    assert capture.path == "/v71/payments/PSP1/captures"
    assert capture.json == {
        "merchantAccount": "Merchant",
        "reference": "k1",
        "amount": {"value": 500, "currency": "GBP"},
    }
    assert a.void_call("PSP1", "k2").json == {"merchantAccount": "Merchant", "reference": "k2"}
    assert a.refund_call("PSP1", 1, "GBP", "k3").path == "/v71/payments/PSP1/refunds"
    token = a.tokenize_call(CARD, "cust-9", "k4").json
    assert token["storePaymentMethod"] is True
    assert (token["shopperReference"], token["amount"]["value"]) == ("cust-9", 0)
    assert a.status_call("ref/1", None).path == "/v71/payments?reference=ref%2F1"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (
            {"refusalReason": "Not enough balance", "refusalReasonCode": "12"},
            DeclineCode.INSUFFICIENT_FUNDS,
        ),
        ({"refusalReason": "CVC Declined", "refusalReasonCode": "24"}, DeclineCode.INCORRECT_CVC),
        ({"refusalReason": "Expired Card", "refusalReasonCode": "6"}, DeclineCode.EXPIRED_CARD),
        ({"refusalReason": "Refused", "refusalReasonCode": "2"}, DeclineCode.CARD_DECLINED),
        (
            {"refusalReason": "Acquirer Error", "refusalReasonCode": "4"},
            DeclineCode.PROCESSING_ERROR,
        ),
        (
            {
                "refusalReason": "Refused",
                "refusalReasonCode": "2",
                "additionalData": {"refusalReasonRaw": "05 : Do not honor"},
            },
            DeclineCode.DO_NOT_HONOR,
        ),
        (
            {"refusalReason": "Refused", "additionalData": {"refusalReasonRaw": "DECLINED 51"}},
            DeclineCode.INSUFFICIENT_FUNDS,
        ),
        ({"refusalReason": "Not enough balance"}, DeclineCode.INSUFFICIENT_FUNDS),
        ({"refusalReason": "Something new", "refusalReasonCode": "99"}, DeclineCode.CARD_DECLINED),
    ],
)
def test_adyen_refusals(answer: dict[str, Any], expected: DeclineCode) -> None:
    assert refusal_code(answer) is expected
    result = adyen().parse_authorize(200, {"resultCode": "Refused", "pspReference": "P"} | answer)
    assert (result.outcome, result.decline_code) == (Outcome.DECLINED, expected)
    assert result.may_retry_elsewhere is False


@pytest.mark.parametrize(
    ("code", "outcome", "retry"),
    [
        ("Authorised", Outcome.APPROVED, False),
        ("RedirectShopper", Outcome.PENDING, False),
        ("ChallengeShopper", Outcome.PENDING, False),
        ("IdentifyShopper", Outcome.PENDING, False),
        ("Pending", Outcome.PENDING, False),
        ("Received", Outcome.PENDING, False),
        ("Cancelled", Outcome.ERROR, True),
        ("Error", Outcome.ERROR, False),
        ("SomethingNew", Outcome.ERROR, False),
    ],
)
def test_adyen_result_codes(code: str, outcome: Outcome, retry: bool) -> None:
    body = {
        "resultCode": code,
        "pspReference": "P1",
        "amount": {"value": 1250, "currency": "GBP"},
        "action": {"type": "threeDS2"},
    }
    result = adyen().parse_authorize(200, body)
    assert (result.outcome, result.may_retry_elsewhere) == (outcome, retry)
    if code.endswith("Shopper"):
        assert result.action == {"type": "threeDS2"}


@pytest.mark.parametrize(
    ("status", "error_code", "retry"),
    [
        (422, "101", True),
        (422, "704", False),
        (401, "000", True),
        (500, "905", False),
        (503, "905", False),
        (429, "000", True),
    ],
)
def test_adyen_errors(status: int, error_code: str, retry: bool) -> None:
    body = {"status": status, "errorCode": error_code, "message": "m", "errorType": "validation"}
    result = adyen().parse_authorize(status, body)
    assert (result.outcome, result.may_retry_elsewhere) == (Outcome.ERROR, retry)


def test_adyen_modifications_received_are_accepted() -> None:
    body = {
        "pspReference": "MOD1",
        "paymentPspReference": "P1",
        "status": "received",
        "amount": {"value": 500, "currency": "GBP"},
    }
    for parse in (adyen().parse_capture, adyen().parse_refund, adyen().parse_void):
        result = parse(201, body)
        assert (result.outcome, result.psp_reference) == (Outcome.APPROVED, "MOD1")
        assert result.message is not None
        assert "webhook" in result.message


def test_adyen_token_joins_shopper_and_stored_method() -> None:
    body = {
        "resultCode": "Authorised",
        "pspReference": "P1",
        "additionalData": {
            "tokenization.storedPaymentMethodId": "M1",
            "tokenization.shopperReference": "cust-9",
        },
    }
    assert adyen().parse_tokenize(200, body).token == "cust-9:M1"
    legacy = {
        "resultCode": "Authorised",
        "pspReference": "P1",
        "additionalData": {
            "recurring.recurringDetailReference": "M2",
            "recurring.shopperReference": "c",
        },
    }
    assert adyen().parse_tokenize(200, legacy).token == "c:M2"
    assert adyen().parse_tokenize(200, {"resultCode": "Authorised"}).outcome is Outcome.ERROR


# --- Checkout.com -------------------------------------------------------------------


def test_checkout_sale_request() -> None:
    call = checkout(processing_channel_id="pc_1").authorize_call(order(capture=False))
    assert (call.method, call.path) == ("POST", "/payments")
    assert call.headers["Authorization"] == "Bearer sk_sbox_abc"
    assert call.headers["Cko-Idempotency-Key"] == "idem-1"
    assert "Idempotency-Key" not in call.headers
    assert call.json == {
        "source": {
            "type": "card",
            "number": PAN,
            "expiry_month": 3,
            "expiry_year": 2030,
            "cvv": CVV,
            "name": "Ada Lovelace",
            "store_for_future_use": False,
        },
        "amount": 1250,
        "currency": "GBP",
        "reference": "pay_123",
        "capture": False,
        "processing_channel_id": "pc_1",
        "payment_type": "Regular",
    }


def test_checkout_other_requests() -> None:
    c = checkout()
    assert c.authorize_call(order(card=None, token="src_1")).json["source"] == {
        "type": "id",
        "id": "src_1",
    }
    assert c.capture_call("pay_1", 500, "GBP", "k1").json == {"reference": "k1", "amount": 500}
    assert c.void_call("pay_1", "k2").path == "/payments/pay_1/voids"
    assert c.refund_call("pay_1", 5, "GBP", "k3").path == "/payments/pay_1/refunds"
    token = c.tokenize_call(CARD, "cust", "k4").json
    assert token["amount"] == 0
    assert token["source"]["store_for_future_use"] is True
    assert c.status_call("r 1", None).path == "/payments?reference=r%201&limit=100"
    assert c.status_call("r", "pay_9").path == "/payments/pay_9"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("20051", DeclineCode.INSUFFICIENT_FUNDS),
        ("20054", DeclineCode.EXPIRED_CARD),
        ("30033", DeclineCode.EXPIRED_CARD),
        ("20087", DeclineCode.INCORRECT_CVC),
        ("20005", DeclineCode.DO_NOT_HONOR),
        ("20096", DeclineCode.PROCESSING_ERROR),
        ("20057", DeclineCode.CARD_DECLINED),
        ("30041", DeclineCode.CARD_DECLINED),
    ],
)
def test_checkout_declines(code: str, expected: DeclineCode) -> None:
    body = {
        "id": "pay_1",
        "approved": False,
        "status": "Declined",
        "response_code": code,
        "response_summary": "Declined",
    }
    result = checkout().parse_authorize(201, body)
    assert (result.outcome, result.decline_code, result.psp_reference) == (
        Outcome.DECLINED,
        expected,
        "pay_1",
    )
    assert result.may_retry_elsewhere is False


def test_checkout_approved_pending_and_errors() -> None:
    c = checkout()
    ok = c.parse_authorize(
        201,
        {
            "id": "pay_1",
            "approved": True,
            "status": "Authorized",
            "amount": 1250,
            "response_code": "10000",
            "source": {"id": "src_1"},
        },
    )
    assert (ok.outcome, ok.amount, ok.token) == (Outcome.APPROVED, 1250, "src_1")
    pending = c.parse_authorize(
        202, {"id": "pay_2", "status": "Pending", "_links": {"redirect": {"href": "https://3ds"}}}
    )
    assert (pending.outcome, pending.action) == (Outcome.PENDING, {"href": "https://3ds"})
    invalid = c.parse_authorize(
        422, {"error_type": "request_invalid", "error_codes": ["card_number_invalid"]}
    )
    assert (invalid.decline_code, invalid.may_retry_elsewhere) == (
        DeclineCode.INVALID_REQUEST,
        True,
    )
    assert invalid.message == "card_number_invalid"
    assert c.parse_authorize(429, None).may_retry_elsewhere is True
    duplicate = c.parse_authorize(429, {"error_type": "duplicate_request"})
    assert duplicate.may_retry_elsewhere is False
    assert c.parse_authorize(500, None).may_retry_elsewhere is False
    assert c.parse_authorize(401, None).may_retry_elsewhere is True
    action = c.parse_refund(202, {"action_id": "act_1"})
    assert (action.outcome, action.psp_reference) == (Outcome.APPROVED, "act_1")


def test_checkout_status_list() -> None:
    c = checkout()
    listed = c.parse_status(
        200,
        {
            "total_count": 1,
            "data": [{"id": "pay_1", "status": "Captured", "approved": True, "amount": 5}],
        },
    )
    assert (listed.outcome, listed.psp_reference) == (Outcome.APPROVED, "pay_1")
    empty = c.parse_status(200, {"total_count": 0, "data": []})
    assert (empty.decline_code, empty.may_retry_elsewhere) == (DeclineCode.NOT_FOUND, False)
    single = c.parse_status(200, {"id": "pay_1", "status": "Voided", "approved": True})
    assert single.outcome is Outcome.APPROVED


# --- sandbox ------------------------------------------------------------------------


def test_sandbox_requests_and_answers() -> None:
    s = SandboxConnector("http://sandbox", api_key="sbx-key")
    call = s.authorize_call(order(capture=False))
    assert call.path == "/sandbox/payments"
    assert call.headers == {
        "Accept": "application/json",
        "Authorization": "Bearer sbx-key",
        "Idempotency-Key": "idem-1",
    }
    assert call.json["card"] == {
        "number": PAN,
        "exp_month": 3,
        "exp_year": 2030,
        "cvc": CVV,
        "holder": "Ada Lovelace",
    }
    assert call.json["capture"] is False
    assert "Authorization" not in SandboxConnector().authorize_call(order()).headers
    declined = s.parse_authorize(
        201, {"id": "sbp_1", "status": "declined", "decline_code": "insufficient_funds"}
    )
    assert declined.decline_code is DeclineCode.INSUFFICIENT_FUNDS
    odd = s.parse_authorize(201, {"id": "sbp_1", "status": "declined", "decline_code": "??"})
    assert odd.decline_code is DeclineCode.CARD_DECLINED
    empty = s.parse_status(200, {"data": []})
    assert (empty.decline_code, empty.may_retry_elsewhere) == (DeclineCode.NOT_FOUND, True)
    assert not s.parse_authorize(503, {"error": {"code": "unavailable"}}).may_retry_elsewhere


# --- MOTO, saving a card, charging a stored token -------------------------------------


MOTO = Interaction.MOTO
MIT = Interaction.MERCHANT_INITIATED


def test_the_channel_decides_moto() -> None:
    assert interaction_for("phone") is MOTO
    assert interaction_for("speech") is MOTO
    assert interaction_for("ivr") is MOTO
    assert interaction_for("link") is Interaction.ECOMMERCE


def test_stripe_moto_and_charge_by_token() -> None:
    moto = stripe().authorize_call(order(interaction=MOTO)).form
    assert moto is not None
    assert moto["payment_method_options[card][moto]"] == "true"
    web = stripe().authorize_call(order()).form
    assert web is not None
    assert "payment_method_options[card][moto]" not in web
    charge = stripe().charge_token_call(order(card=None, token="cus_1:pm_2", interaction=MIT))
    assert charge.path == "/v1/payment_intents"
    assert charge.headers["Idempotency-Key"] == "idem-1"
    assert charge.form is not None
    assert {
        k: charge.form[k] for k in ("customer", "payment_method", "off_session", "confirm")
    } == {
        "customer": "cus_1",
        "payment_method": "pm_2",
        "off_session": "true",
        "confirm": "true",
    }
    assert not any("[number]" in k or "moto" in k for k in charge.form)
    with pytest.raises(ValueError, match="token"):
        stripe().charge_token_call(order())


def test_stripe_keeps_a_token_by_attaching_it_to_a_customer() -> None:
    s = stripe()
    call = s.keep_token_call("pm_9", "pay_1", "k1")
    assert call is not None
    assert (call.path, call.headers["Idempotency-Key"]) == ("/v1/customers", "k1")
    assert call.form == {
        "payment_method": "pm_9",
        "invoice_settings[default_payment_method]": "pm_9",
        "metadata[reference]": "pay_1",
    }
    assert s.keep_token_call("cus_1:pm_9", "pay_1", "k1") is None  # attached already
    kept = s.parse_keep_token(
        200,
        {
            "id": "cus_7",
            "object": "customer",
            "invoice_settings": {"default_payment_method": "pm_9"},
        },
    )
    assert (kept.outcome, kept.token) == (Outcome.APPROVED, "cus_7:pm_9")
    assert s.parse_keep_token(200, {"id": "cus_7"}).outcome is Outcome.ERROR


def test_adyen_moto_store_with_the_payment_and_charge_by_token() -> None:
    a = adyen()
    moto = a.authorize_call(order(interaction=MOTO)).json
    assert moto["shopperInteraction"] == "Moto"
    assert "storePaymentMethod" not in moto
    saved = a.authorize_call(order(store=True, shopper_reference="pay_123")).json
    assert saved["storePaymentMethod"] is True
    assert saved["shopperReference"] == "pay_123"
    assert saved["recurringProcessingModel"] == "UnscheduledCardOnFile"
    assert saved["shopperInteraction"] == "Ecommerce"
    charge = a.charge_token_call(order(card=None, token="pay_123:M1", interaction=MIT)).json
    assert charge["paymentMethod"] == {"type": "scheme", "storedPaymentMethodId": "M1"}
    assert charge["shopperReference"] == "pay_123"
    assert charge["shopperInteraction"] == "ContAuth"
    assert charge["recurringProcessingModel"] == "UnscheduledCardOnFile"
    assert a.keep_token_call("pay_123:M1", "pay_123", "k") is None
    approved = a.parse_authorize(
        200,
        {
            "resultCode": "Authorised",
            "pspReference": "P1",
            "additionalData": {
                "tokenization.storedPaymentMethodId": "M1",
                "tokenization.shopperReference": "pay_123",
            },
        },
    )
    assert approved.token == "pay_123:M1"
    assert a.parse_authorize(200, {"resultCode": "Authorised"}).token is None


def test_checkout_moto_store_and_charge_by_token() -> None:
    c = checkout()
    moto = c.authorize_call(order(interaction=MOTO)).json
    assert moto["payment_type"] == "MOTO"
    saved = c.authorize_call(order(store=True)).json
    assert saved["source"]["store_for_future_use"] is True
    charge = c.charge_token_call(order(card=None, token="src_1", interaction=MIT)).json
    assert charge["source"] == {"type": "id", "id": "src_1"}
    assert charge["merchant_initiated"] is True
    assert charge["payment_type"] == "Unscheduled"
    assert c.keep_token_call("src_1", "pay_123", "k") is None


def test_sandbox_moto_store_and_charge_by_token() -> None:
    s = SandboxConnector()
    moto = s.authorize_call(order(interaction=MOTO)).json
    assert moto["interaction"] == "moto"
    assert "store" not in moto
    assert s.authorize_call(order(store=True)).json["store"] is True
    charge = s.charge_token_call(order(card=None, token="sbt_1", interaction=MIT)).json
    assert (charge["token"], charge["interaction"]) == ("sbt_1", "merchant_initiated")
    assert "card" not in charge
    approved = s.parse_authorize(201, {"id": "sbp_1", "status": "approved", "token": "sbt_2"})
    assert approved.token == "sbt_2"
    assert s.keep_token_call("sbt_2", "pay_123", "k") is None


@pytest.mark.parametrize("connector", every(), ids=lambda c: c.name)
def test_a_token_charge_never_carries_card_data_and_needs_a_token(connector: Connector) -> None:
    token = {"stripe": "cus_1:pm_1", "adyen": "s:M1"}.get(connector.name, "tok_1")
    call = connector.charge_token_call(order(card=None, token=token, interaction=MIT))
    assert PAN not in json.dumps([call.json, call.form])
    # authorize_call with a token is the same charge.
    same = connector.authorize_call(order(card=None, token=token, interaction=MIT))
    assert (same.json, same.form) == (call.json, call.form)
    with pytest.raises(ValueError, match="token"):
        connector.charge_token_call(order())


# --- shared rules -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "retry"),
    [
        (400, DeclineCode.INVALID_REQUEST, True),
        (401, DeclineCode.INVALID_REQUEST, True),
        (404, DeclineCode.NOT_FOUND, True),
        (409, DeclineCode.PROCESSING_ERROR, False),
        (422, DeclineCode.INVALID_REQUEST, True),
        (429, DeclineCode.RATE_LIMITED, True),
        (500, DeclineCode.PROCESSING_ERROR, False),
        (502, DeclineCode.UNAVAILABLE, False),
        (503, DeclineCode.UNAVAILABLE, False),
        (504, DeclineCode.UNAVAILABLE, False),
    ],
)
def test_http_error_verdicts(status: int, code: DeclineCode, retry: bool) -> None:
    result = http_error(status, None)
    assert (result.outcome, result.decline_code, result.may_retry_elsewhere) == (
        Outcome.ERROR,
        code,
        retry,
    )


def test_pick_status_with_nothing_found() -> None:
    assert pick_status([], not_found_is_final=True).may_retry_elsewhere is True
    assert pick_status([], not_found_is_final=False).may_retry_elsewhere is False


def test_provider_words_never_carry_a_card_number() -> None:
    error = {"type": "card_error", "code": "card_declined", "message": f"card {PAN} was declined"}
    result = stripe().parse_authorize(402, {"error": error})
    assert result.message is not None
    assert PAN not in result.message
    assert "424242" in result.message  # masked to BIN and last 4, still useful


# --- scrub --------------------------------------------------------------------------


@pytest.mark.parametrize("connector", every(), ids=lambda c: c.name)
def test_scrub_removes_card_data_from_every_shape(connector: Connector) -> None:
    call = connector.authorize_call(order())
    for transcript in (
        call,
        {"request": {"json": call.json, "form": call.form}, "response": {"ok": True}},
        json.dumps(call.json) if call.json is not None else "",
        httpx.QueryParams(call.form or {}).__str__(),
        [call.json, call.form],
    ):
        before = copy.deepcopy(transcript)
        scrubbed = connector.scrub(transcript)
        text = repr(scrubbed)
        assert PAN not in text
        assert f"'{CVV}'" not in text
        assert f'"{CVV}"' not in text
        assert f"={CVV}" not in text
        assert "2030" not in text
        assert "sk_" not in text
        assert "adyen-key" not in text
        assert "sbx-key" not in text
        assert transcript == before  # a copy: the original is untouched


@pytest.mark.parametrize("connector", every(), ids=lambda c: c.name)
def test_scrub_keeps_what_is_not_card_data(connector: Connector) -> None:
    body = {
        "reference": "pay_123",
        "amount": 1250,
        "status": "ok",
        "last4": "4242",
        "note": f"customer read {PAN[:4]} {PAN[4:8]} {PAN[8:12]} {PAN[12:]} aloud",
    }
    scrubbed = connector.scrub(body)
    assert {k: scrubbed[k] for k in ("reference", "amount", "status", "last4")} == {
        "reference": "pay_123",
        "amount": 1250,
        "status": "ok",
        "last4": "4242",
    }
    assert PAN[4:8] + " " + PAN[8:12] not in scrubbed["note"]  # the Luhn sweep got it


def test_scrub_reads_encoded_form_keys_and_bytes() -> None:
    raw = (
        "amount=1250&payment_method_data%5Bcard%5D%5Bnumber%5D="
        + PAN
        + "&payment_method_data%5Bcard%5D%5Bcvc%5D="
        + CVV
    ).encode()
    text = stripe().scrub(raw)
    assert PAN not in text
    assert f"={CVV}" not in text
    assert "amount=1250" in text


def test_scrub_masks_secrets_in_headers_and_text() -> None:
    scrubbed = stripe().scrub(
        {
            "headers": {"Authorization": "Bearer sk_live_x"},
            "log": "sent Authorization: Bearer sk_live_y",
        }
    )
    assert "sk_live" not in repr(scrubbed)


# --- sending ------------------------------------------------------------------------


async def test_send_encodes_json_and_form_and_decodes_answers() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/text":
            return httpx.Response(500, text="upstream broke")
        if request.url.path == "/empty":
            return httpx.Response(204)
        return httpx.Response(200, json={"ok": True})

    target = SandboxConnector("http://psp.test/")
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        assert await send(client, target, HttpCall("POST", "/j", {"X": "1"}, {"a": 1})) == (
            200,
            {"ok": True},
        )
        await send(client, target, HttpCall("POST", "/f", form={"a[b]": "c"}))
        assert await send(client, target, HttpCall("GET", "/text")) == (500, "upstream broke")
        assert await send(client, target, HttpCall("GET", "/empty")) == (204, None)
    assert str(seen[0].url) == "http://psp.test/j"
    assert seen[0].headers["content-type"] == "application/json"
    assert seen[0].headers["x"] == "1"
    assert seen[1].headers["content-type"] == "application/x-www-form-urlencoded"
    assert seen[1].content == b"a%5Bb%5D=c"
