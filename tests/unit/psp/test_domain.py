"""The PSP adapter's pure rules: routing, failover decisions, money bounds."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transact.kernel.errors import ApiError
from transact.psp import domain
from transact.psp.connectors.base import DeclineCode, Outcome, PspResult

KNOWN = frozenset({"sandbox", "stripe", "adyen", "checkout"})
GBP_VISA = domain.PaymentFacts(amount=1000, currency="GBP", brand="visa", channel="phone")


def route(**values: object) -> domain.Route:
    return domain.route_from_dict({"connector": "stripe", **values}, KNOWN)


def test_rules_filter_by_currency_brand_amount_and_channel() -> None:
    routes = [
        route(connector="adyen", currencies=["EUR"]),
        route(connector="checkout", brands=["amex"]),
        route(connector="stripe", max_amount=500),
        route(connector="sandbox", channels=["link"]),
        route(connector="stripe", min_amount=1000, max_amount=1000, priority=1),
    ]
    chosen = domain.candidates(routes, GBP_VISA, 0.0)
    assert [(r.connector, r.priority) for r in chosen] == [("stripe", 1)]


def test_priorities_order_the_fallbacks() -> None:
    routes = [
        route(connector="adyen", priority=2),
        route(connector="stripe", priority=1),
        route(connector="checkout", priority=3),
    ]
    assert [r.connector for r in domain.candidates(routes, GBP_VISA, 0.5)] == [
        "stripe",
        "adyen",
        "checkout",
    ]


def test_weights_split_the_volume() -> None:
    routes = [route(connector="stripe", weight=75), route(connector="adyen", weight=25)]
    firsts = Counter(
        domain.candidates(routes, GBP_VISA, i / 1000)[0].connector for i in range(1000)
    )
    assert firsts == Counter({"stripe": 750, "adyen": 250})
    assert [r.connector for r in domain.candidates(routes, GBP_VISA, 0.9)] == ["adyen", "stripe"]


@given(
    st.floats(min_value=0, max_value=0.999999),
    st.lists(
        st.tuples(st.sampled_from(sorted(KNOWN)), st.integers(1, 100), st.integers(0, 3)),
        min_size=1,
        max_size=6,
    ),
)
def test_every_matching_route_is_tried_once(draw: float, spec: list[tuple[str, int, int]]) -> None:
    routes = [route(connector=c, weight=w, priority=p) for c, w, p in spec]
    chosen = domain.candidates(routes, GBP_VISA, draw)
    assert sorted(map(id, chosen)) == sorted(map(id, routes))
    assert [r.priority for r in chosen] == sorted(r.priority for r in chosen)


@pytest.mark.parametrize(
    "bad",
    [
        {"connector": "paypal"},
        {"currencies": ["XXX1"]},
        {"currencies": []},
        {"channels": ["fax"]},
        {"min_amount": -1},
        {"max_amount": 1.5},
        {"min_amount": 10, "max_amount": 5},
        {"weight": 0},
        {"weight": True},
        {"base_url": "ftp://x"},
        {"priority": "high"},
    ],
)
def test_bad_routes_are_refused_clearly(bad: dict[str, object]) -> None:
    with pytest.raises(domain.RouteError) as error:
        domain.route_from_dict({"connector": "stripe", **bad}, KNOWN)
    assert error.value.status == 422


def test_failover_only_when_provably_not_charged() -> None:
    assert domain.after_attempt(PspResult(Outcome.APPROVED)) is domain.Next.DONE
    declined = PspResult(Outcome.DECLINED, decline_code=DeclineCode.INSUFFICIENT_FUNDS)
    assert domain.after_attempt(declined) is domain.Next.DONE, "a decline never fails over"
    assert domain.after_attempt(PspResult(Outcome.PENDING)) is domain.Next.DONE
    refused = PspResult(Outcome.ERROR, may_retry_elsewhere=True)
    assert domain.after_attempt(refused) is domain.Next.TRY_NEXT
    ambiguous = PspResult(Outcome.ERROR, may_retry_elsewhere=False)
    assert domain.after_attempt(ambiguous) is domain.Next.ASK_STATUS


def test_refunds_and_captures_stay_within_bounds() -> None:
    balance = domain.Balance(authorized=1000, captured=1000, refunded=400)
    assert balance.refundable() == 600
    balance.check_refund(600)
    for amount in (601, 0, -1):
        with pytest.raises(ApiError):
            balance.check_refund(amount)
    assert balance.status_after_refund(600) is domain.PaymentStatus.REFUNDED
    assert balance.status_after_refund(100) is domain.PaymentStatus.PARTIALLY_REFUNDED
    auth_only = domain.Balance(authorized=1000, captured=0)
    auth_only.check_capture(1000)
    with pytest.raises(ApiError):
        auth_only.check_capture(1001)
    with pytest.raises(ApiError):
        domain.Balance(1000, 0, voided=True).check_capture(1)


def test_only_a_customer_at_the_hosted_page_is_sent_back_to_it_after_3ds() -> None:
    from types import SimpleNamespace

    from transact.psp.flow import Psp

    def way_back(public_url: str | None, channel: str) -> str | None:
        stub = SimpleNamespace(
            kernel=SimpleNamespace(settings=SimpleNamespace(public_url=public_url))
        )
        return Psp._way_back(stub, channel)  # type: ignore[arg-type]

    assert way_back("https://pay.example/", "link") == "https://pay.example/pay/return"
    assert way_back("https://pay.example", "phone") is None
    assert way_back(None, "link") is None
