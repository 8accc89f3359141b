"""The PSP adapter's rules, free of I/O: routing, failover decisions, circuit breaking, money."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from transact.contracts.money import check_money
from transact.kernel.errors import ApiError
from transact.psp.connectors.base import Outcome, PspResult

KNOWN_CHANNELS = frozenset({"phone", "link", "speech", "ivr"})


class RouteError(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(422, "invalid_route", message)


@dataclass(frozen=True)
class Route:
    """One connector a tenant's payments may go to, and which payments it takes."""

    connector: str
    base_url: str | None = None
    currencies: frozenset[str] | None = None
    brands: frozenset[str] | None = None
    min_amount: int | None = None
    max_amount: int | None = None
    channels: frozenset[str] | None = None
    weight: int = 100  # share among the matching routes of equal priority
    priority: int = 0  # lower first

    def takes(self, facts: PaymentFacts) -> bool:
        return (
            (self.currencies is None or facts.currency in self.currencies)
            and (self.brands is None or facts.brand in self.brands)
            and (self.min_amount is None or facts.amount >= self.min_amount)
            and (self.max_amount is None or facts.amount <= self.max_amount)
            and (self.channels is None or facts.channel in self.channels)
        )

    def to_dict(self) -> dict[str, Any]:
        def listed(values: frozenset[str] | None) -> list[str] | None:
            return None if values is None else sorted(values)

        return {
            "connector": self.connector,
            "base_url": self.base_url,
            "currencies": listed(self.currencies),
            "brands": listed(self.brands),
            "min_amount": self.min_amount,
            "max_amount": self.max_amount,
            "channels": listed(self.channels),
            "weight": self.weight,
            "priority": self.priority,
        }


def route_from_dict(data: dict[str, Any], known_connectors: frozenset[str]) -> Route:
    """A route from settings, or a RouteError that says exactly what is wrong."""
    connector = data.get("connector")
    if connector not in known_connectors:
        raise RouteError(f"connector must be one of {', '.join(sorted(known_connectors))}")

    def strings(name: str, check: Any = None) -> frozenset[str] | None:
        value = data.get(name)
        if value is None:
            return None
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise RouteError(f"{name} must be a non-empty list of strings or null")
        if check is not None:
            bad = [v for v in value if not check(v)]
            if bad:
                raise RouteError(f"{name} has unknown values {bad}")
        return frozenset(value)

    def amount(name: str) -> int | None:
        value = data.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise RouteError(f"{name} must be a non-negative integer in minor units")
        return value

    route = Route(
        connector=connector,
        base_url=data.get("base_url"),
        currencies=strings("currencies", lambda c: check_money(1, c) is None),
        brands=strings("brands"),
        min_amount=amount("min_amount"),
        max_amount=amount("max_amount"),
        channels=strings("channels", lambda c: c in KNOWN_CHANNELS),
        weight=data.get("weight", 100),
        priority=data.get("priority", 0),
    )
    if (
        isinstance(route.weight, bool)
        or not isinstance(route.weight, int)
        or not (0 < route.weight <= 1000)
    ):
        raise RouteError("weight must be an integer from 1 to 1000")
    if isinstance(route.priority, bool) or not isinstance(route.priority, int):
        raise RouteError("priority must be an integer")
    if (
        route.min_amount is not None
        and route.max_amount is not None
        and (route.min_amount > route.max_amount)
    ):
        raise RouteError("min_amount is above max_amount")
    if route.base_url is not None and not (
        isinstance(route.base_url, str) and route.base_url.startswith(("https://", "http://"))
    ):
        raise RouteError("base_url must be an http(s) URL")
    return route


@dataclass(frozen=True)
class PaymentFacts:
    amount: int
    currency: str
    brand: str | None
    channel: str


def candidates(routes: Sequence[Route], facts: PaymentFacts, draw: float) -> list[Route]:
    """The routes to try, in order. Within one priority, `draw` (0 <= draw < 1) picks the
    first by weight, so traffic splits by volume; the rest follow as fallbacks."""
    matching = [r for r in routes if r.takes(facts)]
    ordered: list[Route] = []
    for priority in sorted({r.priority for r in matching}):
        tier = [r for r in matching if r.priority == priority]
        total = sum(r.weight for r in tier)
        point, first = draw * total, tier[0]
        for route in tier:
            if point < route.weight:
                first = route
                break
            point -= route.weight
        ordered += [first, *(r for r in tier if r is not first)]
    return ordered


class Next(StrEnum):
    DONE = "done"  # the PSP answered: approved, declined or pending
    TRY_NEXT = "try_next"  # provably not charged: another PSP may take it
    ASK_STATUS = "ask_status"  # we cannot know whether it charged: ask before anything else


def after_attempt(result: PspResult) -> Next:
    if result.outcome is not Outcome.ERROR:
        return Next.DONE
    return Next.TRY_NEXT if result.may_retry_elsewhere else Next.ASK_STATUS


@dataclass(frozen=True)
class BreakerPolicy:
    """Consecutive failures that open a connector's circuit, and for how long."""

    threshold: int = 5
    open_seconds: float = 30.0


class PaymentStatus(StrEnum):
    SUBMITTED = "submitted"
    AUTHORIZED = "authorized"  # captured at once for a sale; see `captured`
    DECLINED = "declined"
    FAILED = "failed"
    # No longer written: a payment waiting for 3-D Secure stays SUBMITTED and is
    # announced by `payment.pending`. Kept for rows written before that.
    PENDING = "pending"
    VOIDED = "voided"
    REFUNDED = "refunded"
    PARTIALLY_REFUNDED = "partially_refunded"


@dataclass(frozen=True)
class Balance:
    authorized: int
    captured: int
    refunded: int = 0
    voided: bool = False

    def refundable(self) -> int:
        return self.captured - self.refunded

    def check_refund(self, amount: int) -> None:
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise ApiError(422, "invalid_amount", "refund amount must be a positive integer")
        if amount > self.refundable():
            raise ApiError(422, "refund_too_large", f"at most {self.refundable()} can be refunded")

    def check_capture(self, amount: int) -> None:
        if self.voided:
            raise ApiError(409, "voided", "the authorization was voided")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise ApiError(422, "invalid_amount", "capture amount must be a positive integer")
        if self.captured + amount > self.authorized:
            raise ApiError(
                422,
                "capture_too_large",
                f"at most {self.authorized - self.captured} can be captured",
            )

    def status_after_refund(self, amount: int) -> PaymentStatus:
        return (
            PaymentStatus.REFUNDED
            if self.refunded + amount >= self.captured
            else PaymentStatus.PARTIALLY_REFUNDED
        )


@dataclass
class AttemptLog:
    """What the flow learns while trying connectors; becomes attempt rows."""

    entries: list[dict[str, Any]] = field(default_factory=list)

    def add(self, **entry: Any) -> None:
        self.entries.append(entry)


def latency_ms(seconds: float) -> int:
    return max(0, math.ceil(seconds * 1000))
