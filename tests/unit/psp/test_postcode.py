"""The billing postcode at the PSP adapter: each connector's wire format for it, its
reading of the provider's address check (AVS), and the postcode kept out of reprs and
transcripts. (Over real HTTP against the simulator: tests/contract/test_connectors.py.)"""

from __future__ import annotations

import json
from typing import Any

import pytest

from transact.kernel.sensitive import Pan, SensitiveStr
from transact.psp.connectors import (
    AdyenConnector,
    CheckoutConnector,
    SandboxConnector,
    StripeConnector,
)
from transact.psp.connectors.base import Card, Order, Outcome
from transact.psp.flow import card_from_vault
from transact.psp.simulator import avs_of

CARD = Card(Pan("4242424242424242"), 3, 2030, SensitiveStr("123"), postcode="SW1A 1AA")
ORDER = Order(reference="pay_1", amount=1250, currency="GBP", idempotency_key="k", card=CARD)


def test_a_card_repr_never_shows_the_postcode() -> None:
    assert "SW1A" not in repr(CARD)
    assert "4242424242424242" not in repr(CARD)


def test_the_vault_payload_brings_the_postcode_to_the_connectors() -> None:
    raw = json.dumps({"pan": "4242424242424242", "expiry": "0330", "cvv": "123"})
    assert card_from_vault(raw.encode()).postcode is None
    typed = json.dumps(
        {"pan": "4242424242424242", "expiry": "0330", "cvv": "123", "postcode": "SW1A 1AA"}
    )
    assert card_from_vault(typed.encode()).postcode == "SW1A 1AA"


def test_stripe_sends_the_postcode_and_expands_the_charge_for_its_check() -> None:
    stripe = StripeConnector("sk_test_x")
    form = stripe.authorize_call(ORDER).form
    assert form is not None
    assert form["payment_method_data[billing_details][address][postal_code]"] == "SW1A 1AA"
    assert form["expand[0]"] == "latest_charge"
    tokenize = stripe.tokenize_call(CARD, "pay_1", "k").form
    assert tokenize is not None
    assert tokenize["billing_details[address][postal_code]"] == "SW1A 1AA"


def _stripe_intent(check: str | None, *, expanded: bool = True) -> dict[str, Any]:
    charge: Any = "ch_1"
    if expanded:
        checks = {"address_postal_code_check": check, "cvc_check": "pass"}
        charge = {"id": "ch_1", "payment_method_details": {"card": {"checks": checks}}}
    return {
        "id": "pi_1",
        "object": "payment_intent",
        "status": "succeeded",
        "amount": 1250,
        "amount_received": 1250,
        "latest_charge": charge,
    }


@pytest.mark.parametrize(
    ("check", "expected"),
    [
        ("pass", "pass"),
        ("fail", "fail"),
        ("unavailable", "unavailable"),
        ("unchecked", "unavailable"),
        (None, None),
    ],
)
def test_stripe_reads_address_postal_code_check(check: str | None, expected: str | None) -> None:
    result = StripeConnector("sk_test_x").parse_authorize(200, _stripe_intent(check))
    assert result.outcome is Outcome.APPROVED
    assert result.postcode_check == expected


def test_stripe_without_the_expanded_charge_says_nothing() -> None:
    result = StripeConnector("sk_test_x").parse_authorize(
        200, _stripe_intent("fail", expanded=False)
    )
    assert result.postcode_check is None


def test_stripe_reads_the_check_of_a_declined_intent() -> None:
    intent = _stripe_intent("fail") | {"status": "requires_payment_method"}
    body = {"error": {"type": "card_error", "code": "card_declined", "payment_intent": intent}}
    result = StripeConnector("sk_test_x").parse_authorize(402, body)
    assert result.outcome is Outcome.DECLINED
    assert result.postcode_check == "fail"


def test_adyen_sends_a_billing_address_with_only_the_postcode_known() -> None:
    adyen = AdyenConnector("key", "Merchant")
    for call in (
        adyen.authorize_call(ORDER),
        adyen.verify_call(ORDER),
        adyen.tokenize_call(CARD, "pay_1", "k"),
    ):
        assert call.json["billingAddress"] == {
            "street": "N/A",
            "houseNumberOrName": "N/A",
            "city": "N/A",
            "postalCode": "SW1A 1AA",
            "country": "ZZ",
        }
        assert "billingAddress" not in call.json["paymentMethod"]


@pytest.mark.parametrize(
    ("avs_result", "expected"),
    [
        ("7 Both postal code and address match", "pass"),
        ("6 Postal code matches, address doesn't match", "pass"),
        ("15 Postal code matches, address not checked", "pass"),
        ("2 Neither postal code nor address match", "fail"),
        ("1 Address matches, postal code doesn't", "fail"),
        ("17 Postal code doesn't match, address not checked", "fail"),
        ("0 Unknown", "unavailable"),
        ("3 AVS unavailable", "unavailable"),
        ("4 AVS not supported for this card type", "unavailable"),
        ("5 No AVS data provided", "unavailable"),
        ("12 Address matches, postal code not checked", "unavailable"),
        ("", None),
        (None, None),
    ],
)
def test_adyen_reads_the_postcodes_half_of_avs_result(
    avs_result: str | None, expected: str | None
) -> None:
    answer: dict[str, Any] = {"resultCode": "Authorised", "pspReference": "P1"}
    if avs_result is not None:
        answer["additionalData"] = {"avsResult": avs_result}
    result = AdyenConnector("key", "Merchant").parse_authorize(200, answer)
    assert result.outcome is Outcome.APPROVED
    assert result.postcode_check == expected


def test_checkout_sends_the_postcode_in_the_card_sources_billing_address() -> None:
    checkout = CheckoutConnector("sk_sbox_x")
    for call in (checkout.authorize_call(ORDER), checkout.verify_call(ORDER)):
        assert call.json["source"]["billing_address"] == {"zip": "SW1A 1AA"}


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("Y", "pass"),
        ("P", "pass"),
        ("Z", "pass"),
        ("W", "pass"),
        ("AE1", "pass"),
        ("N", "fail"),
        ("A", "fail"),
        ("U", "unavailable"),
        ("S", "unavailable"),
        ("G", "unavailable"),
        ("I", "unavailable"),
        (None, None),
    ],
)
def test_checkout_reads_source_avs_check(code: str | None, expected: str | None) -> None:
    source: dict[str, Any] = {"id": "src_1", "type": "card"}
    if code is not None:
        source["avs_check"] = code
    answer = {"id": "pay_1", "status": "Captured", "approved": True, "source": source}
    result = CheckoutConnector("sk_sbox_x").parse_authorize(201, answer)
    assert result.outcome is Outcome.APPROVED
    assert result.postcode_check == expected


def test_sandbox_sends_card_postcode_and_reads_postcode_check() -> None:
    sandbox = SandboxConnector()
    assert sandbox.authorize_call(ORDER).json["card"]["postcode"] == "SW1A 1AA"
    answer = {"id": "sbp_1", "status": "approved", "amount": 1250, "postcode_check": "fail"}
    assert sandbox.parse_authorize(201, answer).postcode_check == "fail"
    assert sandbox.parse_authorize(201, answer | {"postcode_check": "x"}).postcode_check is None


@pytest.mark.parametrize(
    "connector",
    [
        StripeConnector("sk_test_x"),
        AdyenConnector("key", "Merchant"),
        CheckoutConnector("sk_sbox_x"),
        SandboxConnector(),
    ],
)
def test_no_postcode_sends_no_address(connector: Any) -> None:
    call = connector.authorize_call(
        Order(
            reference="pay_1",
            amount=1,
            currency="GBP",
            idempotency_key="k",
            card=Card(Pan("4242424242424242"), 3, 2030),
        )
    )
    text = json.dumps(call.json) + json.dumps(call.form)
    for name in ("postal", "postcode", "billing", "zip", "expand"):
        assert name not in text


@pytest.mark.parametrize(
    ("postcode", "verdict"),
    [
        ("SW1A 1AA", "pass"),
        ("90210", "pass"),
        ("zz1 1zz", "fail"),
        ("ZZ1-1ZZ", "fail"),
        ("00000", "fail"),
        ("99999", "unavailable"),
        ("", "absent"),
        (None, "absent"),
    ],
)
def test_the_simulators_test_postcodes(postcode: str | None, verdict: str) -> None:
    assert avs_of(postcode) == verdict
