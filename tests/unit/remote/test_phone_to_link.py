"""Turning a phone capture into a link: which captures may be, on what terms, and how
remote's view of a phone capture moves as capture's events arrive in any order."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from transact.kernel.errors import ApiError
from transact.remote import domain
from transact.remote.api import CreateLink
from transact.remote.domain import LinkError, LinkTerms, PhoneCapture, PhoneStatus


def capture(**changes: Any) -> PhoneCapture:
    base = PhoneCapture(
        id="pay_1",
        tenant_id="t",
        call_id="CA1",
        agent_id="u1",
        amount=4999,
        currency="GBP",
        reference="ORDER-77",
        status=PhoneStatus.CAPTURING,
    )
    return dataclasses.replace(base, **changes)


def test_an_open_capture_lends_its_own_terms() -> None:
    assert domain.terms_from_phone(capture(), None, None, None) == LinkTerms(
        4999, "GBP", "ORDER-77"
    )


def test_a_body_may_repeat_the_terms() -> None:
    assert domain.terms_from_phone(capture(), 4999, "GBP", " ORDER-77 ") == LinkTerms(
        4999, "GBP", "ORDER-77"
    )


@pytest.mark.parametrize(
    ("amount", "currency", "reference", "field"),
    [
        (5000, None, None, "amount"),
        (None, "EUR", None, "currency"),
        (None, None, "ORDER-78", "reference"),
        (4999, "GBP", "order-77", "reference"),
    ],
)
def test_a_body_may_not_change_them(
    amount: int | None, currency: str | None, reference: str | None, field: str
) -> None:
    with pytest.raises(LinkError) as refused:
        domain.terms_from_phone(capture(), amount, currency, reference)
    assert (refused.value.status, refused.value.code) == (422, "source_mismatch")
    assert refused.value.message.startswith(field)


@pytest.mark.parametrize(
    "changes",
    [
        {"status": PhoneStatus.SUBMITTED},
        {"status": PhoneStatus.CANCELLED},
        {"status": PhoneStatus.EXPIRED},
        {"link_id": "lnk_1"},
        {"amount": None, "currency": None, "reference": None},
    ],
)
def test_only_an_open_capture_not_yet_linked_becomes_a_link(changes: dict[str, Any]) -> None:
    with pytest.raises(LinkError) as refused:
        domain.terms_from_phone(capture(**changes), None, None, None)
    assert (refused.value.status, refused.value.code) == (409, "not_capturing")


def test_the_state_is_checked_before_the_terms() -> None:
    with pytest.raises(LinkError) as refused:
        domain.terms_from_phone(capture(status=PhoneStatus.SUBMITTED), 1, None, None)
    assert refused.value.status == 409


def test_a_phone_capture_only_moves_forward() -> None:
    capturing, submitted = PhoneStatus.CAPTURING, PhoneStatus.SUBMITTED
    cancelled, expired = PhoneStatus.CANCELLED, PhoneStatus.EXPIRED
    assert domain.phone_moves_to(capturing, submitted)
    assert domain.phone_moves_to(capturing, cancelled)
    assert domain.phone_moves_to(submitted, expired)
    assert not domain.phone_moves_to(submitted, capturing)  # a late start
    assert not domain.phone_moves_to(cancelled, submitted)
    assert not domain.phone_moves_to(cancelled, expired)  # an end is final
    assert not domain.phone_moves_to(capturing, capturing)


@pytest.mark.parametrize(
    ("reason", "status"),
    [
        ("expired", PhoneStatus.EXPIRED),
        ("replaced_by_link", PhoneStatus.CANCELLED),
        ("agent", PhoneStatus.CANCELLED),
        ("call_ended", PhoneStatus.CANCELLED),
    ],
)
def test_a_cancelled_capture_ends_by_its_reason(reason: str, status: PhoneStatus) -> None:
    assert domain.phone_status_after_cancel(reason) is status


def test_a_plain_link_needs_its_terms() -> None:
    for missing, code in (
        ("amount", "invalid_amount"),
        ("currency", "invalid_currency"),
        ("reference", "invalid_reference"),
    ):
        body = {"amount": 100, "currency": "GBP", "reference": "R", "channel": "chat"}
        del body[missing]
        with pytest.raises(ApiError) as refused:
            CreateLink.model_validate(body).new_link()
        assert (refused.value.status, refused.value.code) == (422, code)


def test_the_idempotency_fingerprint_of_a_plain_link_is_unchanged() -> None:
    body = {"amount": 100, "currency": "GBP", "reference": "R", "channel": "chat"}
    plain = CreateLink.model_validate(body)
    assert "from_payment_id" not in plain.fingerprint_fields()
    assert plain.fingerprint_fields() == {**body, "to": None, "expires_in": None}
    converted = CreateLink.model_validate({"from_payment_id": "pay_1", "channel": "chat"})
    assert converted.fingerprint_fields()["from_payment_id"] == "pay_1"
