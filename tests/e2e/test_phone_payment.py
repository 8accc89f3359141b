"""The phone journey over real sockets: the platform streams a call naming its agent,
correlation links it, the agent opens a payment, the customer keys the card on the
keypad, the sandbox PSP approves. The agent hears no key; no card number is stored,
published or shown."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.integration.capture.test_capture import CVV, future_expiry
from tests.integration.telephony.conftest import Line, serving
from tests.integration.telephony.test_media_streams import heard
from tests.integration.telephony.test_secure_mode import play
from tests.leaks import card_numbers_in, database_dump
from transact.auth import Accounts, SigningKeys
from transact.telephony.audio import FRAME_SAMPLES
from transact.telephony.dtmf import detect_keys
from transact.telephony.simulate import customer_audio

PAN = "4242424242424242"
PASSWORD = "correct-horse-42"
SERVICES = ["gateway", "auth", "correlation", "capture", "psp", "telephony"]


@pytest.fixture
async def centre(tmp_path: Path) -> AsyncIterator[tuple[Line, httpx.AsyncClient]]:
    async with serving(tmp_path, SERVICES, media_pair_timeout=30.0) as line:
        accounts = Accounts(line.kernel, SigningKeys(line.kernel))
        await accounts.create_user(line.tenant_id, "alice", "agent", PASSWORD)
        await accounts.create_user(line.tenant_id, "root", "admin", PASSWORD)
        base = line.url.replace("ws://", "http://")
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            yield line, client


async def bearer(client: httpx.AsyncClient, username: str) -> dict[str, str]:
    login = await client.post(
        "/api/v1/auth/login", json={"tenant": "shop", "username": username, "password": PASSWORD}
    )
    assert login.status_code == 200, login.text
    client.cookies.clear()
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


async def until(
    client: httpx.AsyncClient,
    path: str,
    headers: dict[str, str],
    want: Any,
    within: float = 30.0,
) -> Any:
    """Poll `path` until `want(body)`; a deadline in seconds, not a count of polls (300
    polls were 6-10 s, too few for a message's first trip through a loaded bus)."""
    body: Any = None
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        body = (await client.get(path, headers=headers)).json()
        if want(body):
            return body
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} never got there within {within:g} s: {body}")


async def test_a_card_keyed_on_the_phone_is_paid_and_heard_by_nobody(
    centre: tuple[Line, httpx.AsyncClient],
) -> None:
    line, client = centre
    alice, root = await bearer(client, "alice"), await bearer(client, "root")
    routes = await client.put(
        "/api/v1/psp/routes", json={"routes": [{"connector": "sandbox"}]}, headers=root
    )
    assert routes.status_code == 200, routes.text

    customer, agent = await line.open_call("CA-e2e", agent="alice")
    assert agent is not None
    calls = await until(client, "/api/v1/calls", alice, lambda b: len(b) == 1)
    assert calls[0]["id"] == "CA-e2e"

    for _ in range(100):  # capture learns of the assignment from the bus
        opened = await client.post(
            "/api/v1/calls/CA-e2e/payments",
            json={"amount": 4200, "currency": "GBP", "reference": "INV-42"},
            headers=alice,
        )
        if opened.status_code != 404:
            break
        await asyncio.sleep(0.05)
    assert opened.status_code == 201, opened.text
    payment_id = opened.json()["id"]
    await line.wait_for("call.secure_mode")

    keys = PAN + future_expiry() + CVV
    audio = customer_audio(keys, 100, 400, None)
    next_seq = await play(customer, audio)
    # All the audio is sent at once, not at 20 ms a frame: a loaded machine needs time.
    agent_heard = await heard(agent, len(audio) // FRAME_SAMPLES, seconds=30.0)
    assert detect_keys(audio) == keys
    assert detect_keys(agent_heard) == ""  # not one key reached the agent's ear

    ready = await until(
        client, f"/api/v1/payments/{payment_id}", alice, lambda b: b["status"] == "ready"
    )
    assert ready["card"]["last4"] == "4242"
    submitted = await client.post(f"/api/v1/payments/{payment_id}/submit", headers=alice)
    assert submitted.status_code == 202
    done = await until(
        client,
        f"/api/v1/payments/{payment_id}",
        alice,
        lambda b: b["status"] not in ("ready", "submitted"),
    )
    assert done["status"] == "authorized", done

    await customer.send(json.dumps({"event": "stop", "sequenceNumber": str(next_seq)}))
    await line.wait_for("call.ended")
    published = " ".join(m.model_dump_json() for m in line.published)
    assert PAN not in published
    assert card_numbers_in(published) == []
    assert card_numbers_in(await database_dump(line.kernel.db.engine)) == []
    assert not np.array_equal(agent_heard, audio)
