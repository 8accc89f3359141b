"""Pay by link end to end: an agent asks for a link by e-mail, a real SMTP server receives
it, the customer follows the link from the e-mail and pays, the PSP authorizes; the card
number is then nowhere it must not be: events, logs, the database, agent-facing answers."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from tests.integration.psp.conftest import simulator  # noqa: F401  (a fixture)
from tests.integration.remote.conftest import (
    VISA,
    Mailbox,
    link_in,
    mailbox,  # noqa: F401  (a fixture)
    open_page,
    page_state,
    post_card,
    running_desk,
)
from tests.leaks import card_numbers_in, database_dump
from transact.kernel.logging import configure_logging

PAN = "4111111111111111"
assert PAN != VISA


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure_logging("DEBUG", json=True, stream=stream)
    yield stream
    root.handlers[:], level = saved
    root.setLevel(level)
    structlog.reset_defaults()


async def test_from_link_request_to_authorized_payment(
    tmp_path: Path,
    simulator: str,  # noqa: F811
    mailbox: Mailbox,  # noqa: F811
    log_stream: io.StringIO,
) -> None:
    async with running_desk(tmp_path, simulator) as desk:
        await desk.link_settings(merchant_name="Example Shop")
        await desk.comms_settings(
            {
                "sender": {"name": "Example Shop", "email": "pay@shop.example"},
                "email": {"host": "127.0.0.1", "port": mailbox.port, "security": "none"},
            }
        )
        agent = await desk.user("alice")
        created = await desk.http.post(
            "/api/v1/payment-links",
            json={
                "amount": 4999,
                "currency": "GBP",
                "reference": "ORDER-77",
                "channel": "email",
                "to": "customer@example.com",
            },
            headers={**agent, "Idempotency-Key": "order-77"},
        )
        assert created.status_code == 201, created.text
        link = created.json()

        [mail] = await mailbox.wait()
        body = mail.get_body(preferencelist=("plain",))
        assert body is not None
        url = link_in(body.get_content())
        assert url == link["url"]

        async with desk.customer() as customer:
            page, csrf = await open_page(customer, url)
            assert "£49.99" in page.text
            assert "ORDER-77" in page.text
            posted = await post_card(customer, csrf, "4111 1111 1111 1111", "12 / 35", "737")
            assert posted.status_code == 303
            await page_state(customer, "paid")
            answers = [(await customer.get("/pay")).text]

        [authorized] = await desk.wait_for("payment.authorized")
        done = await desk.wait_link(link["id"], lambda s: s["status"] == "completed")
        assert done["payment_id"] == authorized.payment_id  # type: ignore[attr-defined]
        payment = await desk.http.get(f"/api/v1/payments/{done['payment_id']}", headers=agent)
        assert payment.json()["status"] == "authorized"
        assert payment.json()["channel"] == "link"
        assert payment.json()["card"] == {"brand": "visa", "bin": "411111", "last4": "1111"}
        listed = await desk.http.get("/api/v1/payment-links", headers=agent)
        answers += [created.text, payment.text, listed.text, json.dumps(done)]
        for topic in ("link.opened", "link.completed", "capture.progress", "message.sent"):
            assert desk.events(topic), topic

        published = "\n".join(m.model_dump_json() for m in desk.published)
        assert PAN not in published
        assert card_numbers_in(published) == []
        assert "customer@example.com" not in published
        for answer in answers:
            assert PAN not in answer
            assert card_numbers_in(answer) == []
        stored = await database_dump(desk.kernel.db.engine)
        assert PAN not in stored
        assert card_numbers_in(stored) == []
        assert "customer@example.com" not in stored
        assert url.rsplit("/", 1)[1] not in stored  # only the token's hash is kept
    # The SMTP server (aiosmtpd, logger `mail.log`) plays the customer's mail provider,
    # which does know the address; every other line is ours.
    logs = "\n".join(
        line for line in log_stream.getvalue().splitlines() if '"logger": "mail.log"' not in line
    )
    assert "remote.link_created" in logs  # the logs were captured
    assert PAN not in logs
    assert card_numbers_in(logs) == []
    assert "customer@example.com" not in logs
