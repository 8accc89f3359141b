"""Reporting's bus consumers: every fact the dashboards count, in its own consumer group."""

from __future__ import annotations

from transact.contracts.calls import CallKeypad
from transact.contracts.capture import (
    CaptureCancelled,
    CaptureCompleted,
    CaptureProgress,
    CaptureStarted,
)
from transact.contracts.links import LinkCreated
from transact.contracts.messages import MessageSent
from transact.contracts.payments import PaymentRefunded, PaymentRequested
from transact.contracts.statements import Statement
from transact.kernel import Service
from transact.reporting.flow import LINK_STAGES, OUTCOMES, Reports

TOPICS = (
    PaymentRequested.topic,
    *OUTCOMES,
    PaymentRefunded.topic,
    CaptureStarted.topic,
    CaptureProgress.topic,
    CaptureCompleted.topic,
    CaptureCancelled.topic,
    CallKeypad.topic,
    LinkCreated.topic,
    *LINK_STAGES,
    MessageSent.topic,
    Statement.topic,
)


def subscribe(service: Service, reports: Reports) -> None:
    # One group, "reporting": every topic reaches it beside the services that act on it.
    for topic in TOPICS:
        service.subscribe(topic, reports.handle)
