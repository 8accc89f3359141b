"""One-time link codes: shown in the Agent UI, keyed by the agent on the call's agent leg,
reported by telephony as `call.agent_code`."""

from __future__ import annotations

import asyncio
import re

import pytest

from tests.integration.correlation.conftest import Floor
from tests.waiting import eventually
from transact.contracts.calls import CallAgentCode
from transact.correlation.codes import MAX_FAILURES
from transact.correlation.flow import Correlation


async def new_code(floor: Floor, username: str) -> str:
    response = await floor.client.post("/api/v1/calls/link-codes", headers=floor.headers(username))
    assert response.status_code == 201, response.text
    return str(response.json()["code"])


async def codes_handled(floor: Floor, n: int) -> None:
    """Wait until correlation has handled `n` agent codes (the inbox records each)."""
    from sqlalchemy import func, select

    from transact.kernel.db.inbox import inbox

    async def count() -> int:
        async with floor.kernel.db.transaction() as session:
            found = await session.scalar(
                select(func.count())
                .select_from(inbox)
                .where(inbox.c.consumer == "correlation.agent_code")
            )
        return int(found or 0)

    for _ in range(250):
        if await count() >= n:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {n} agent codes handled")


class TestLinkCodes:
    async def test_an_agent_gets_a_six_digit_code_that_expires(self, floor: Floor) -> None:
        await floor.person("alice")
        response = await floor.client.post(
            "/api/v1/calls/link-codes", headers=floor.headers("alice")
        )
        assert response.status_code == 201
        body = response.json()
        assert re.fullmatch(r"[0-9]{6}", body["code"])
        assert body["expires_in"] == 120
        # Only a keyed digest of the code is in the cache, under a key that never shows it.
        assert body["code"] not in str(list(floor.kernel.cache._items))  # type: ignore[attr-defined]

    async def test_the_keyed_code_links_the_call_once(self, floor: Floor) -> None:
        await floor.person("alice")
        await floor.start("CA1")
        code = await new_code(floor, "alice")
        await floor.key_code("CA1", code + "#")
        call = await floor.until("CA1", lambda c: c.agent_id is not None)
        assert call.agent_id == floor.id_of("alice")
        await eventually(lambda: len(floor.assigned_events("CA1")) == 1)
        audited = await floor.audit_actions("CA1")
        assert audited[-1]["details"]["via"] == "link_code"
        assert audited[-1]["actor"] == f"user:{floor.id_of('alice')}"

        # Single use: the same code on another call does nothing, and counts as wrong.
        await floor.start("CA2", "B2-222")
        await floor.key_code("CA2", code)
        await codes_handled(floor, 2)
        assert (await floor.call("CA2")).agent_id is None  # type: ignore[union-attr]
        rejected = await floor.audit_actions("CA2")
        assert [r["action"] for r in rejected] == ["correlation.link_code_rejected"]
        assert rejected[0]["outcome"] == "failure"

    async def test_a_new_code_replaces_the_agents_previous_one(self, floor: Floor) -> None:
        await floor.person("alice")
        await floor.start("CA1")
        old = await new_code(floor, "alice")
        fresh = await new_code(floor, "alice")
        await floor.key_code("CA1", old)
        await codes_handled(floor, 1)
        assert (await floor.call("CA1")).agent_id is None  # type: ignore[union-attr]
        await floor.key_code("CA1", fresh)
        assert (await floor.until("CA1", lambda c: c.agent_id is not None)).agent_id == (
            floor.id_of("alice")
        )

    async def test_a_keyed_code_moves_a_call_held_by_someone_else(self, floor: Floor) -> None:
        """Keying the code on the agent leg proves who is on the call."""
        await floor.person("alice")
        await floor.person("bob")
        await floor.start("CA1", agent_hint="bob")
        await floor.until("CA1", lambda c: c.agent_id is not None)
        await floor.key_code("CA1", await new_code(floor, "alice"))
        await floor.until("CA1", lambda c: c.agent_id == floor.id_of("alice"))
        await eventually(lambda: len(floor.assigned_events("CA1")) == 2)
        moved = floor.assigned_events("CA1")[1]
        assert moved.previous_agent_id == floor.id_of("bob")
        audited = await floor.audit_actions("CA1")
        assert audited[-1]["action"] == "correlation.call_transferred"

    async def test_codes_belong_to_their_tenant(self, floor: Floor) -> None:
        await floor.person("olga", tenant="other")
        await floor.start("CA1")
        code = await new_code(floor, "olga")
        await floor.key_code("CA1", code)
        await codes_handled(floor, 1)
        assert (await floor.call("CA1")).agent_id is None  # type: ignore[union-attr]

    async def test_wrong_codes_are_ignored_audited_and_then_locked_out(self, floor: Floor) -> None:
        await floor.person("alice")
        await floor.start("CA1")
        code = await new_code(floor, "alice")
        wrong = f"{(int(code) + 1) % 1_000_000:06d}"
        for attempt in range(MAX_FAILURES):
            await floor.key_code("CA1", wrong if attempt % 2 else "12")
        await codes_handled(floor, MAX_FAILURES)
        rejected = await floor.audit_actions("CA1")
        assert len(rejected) == MAX_FAILURES
        assert rejected[-1]["details"] == {"attempts": MAX_FAILURES, "locked": True}
        # Locked: even the right code no longer links this call (and is not consumed).
        await floor.key_code("CA1", code)
        await codes_handled(floor, MAX_FAILURES + 1)
        assert (await floor.call("CA1")).agent_id is None  # type: ignore[union-attr]
        await floor.start("CA2", "B2-222")
        await floor.key_code("CA2", code)
        await floor.until("CA2", lambda c: c.agent_id == floor.id_of("alice"))

    async def test_a_code_on_an_ended_call_is_not_spent(self, floor: Floor) -> None:
        await floor.person("alice")
        await floor.start("CA1")
        await floor.end("CA1")
        code = await new_code(floor, "alice")
        await floor.key_code("CA1", code)
        await codes_handled(floor, 1)
        await floor.start("CA2", "B2-222")
        await floor.key_code("CA2", code)
        await floor.until("CA2", lambda c: c.agent_id == floor.id_of("alice"))

    async def test_a_redelivered_code_links_once_and_is_not_counted_wrong(
        self, floor: Floor, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        await floor.person("alice")
        await floor.start("CA1")
        code = await new_code(floor, "alice")
        deliveries: list[str] = []
        original = Correlation.agent_code

        async def ack_lost_once(self: Correlation, message: CallAgentCode) -> None:
            await original(self, message)
            deliveries.append(message.id)
            if len(deliveries) == 1:
                raise RuntimeError("ack lost")

        monkeypatch.setattr(Correlation, "agent_code", ack_lost_once)
        await floor.key_code("CA1", code)
        await eventually(lambda: len(deliveries) == 2, within=10)
        assert (await floor.call("CA1")).agent_id == floor.id_of("alice")  # type: ignore[union-attr]
        await asyncio.sleep(0.2)
        assert len(floor.assigned_events("CA1")) == 1
        actions = [a["action"] for a in await floor.audit_actions("CA1")]
        assert actions == ["correlation.call_assigned"]

    async def test_who_may_ask_for_a_code(self, floor: Floor) -> None:
        assert (await floor.client.post("/api/v1/calls/link-codes")).status_code == 401
        cti = await floor.api_client("calls:read", "calls:assign")
        response = await floor.client.post("/api/v1/calls/link-codes", headers=cti)
        assert response.status_code == 403
        await floor.person("sue", "supervisor")
        assert (await new_code(floor, "sue")).isdigit()

    async def test_pending_codes_of_a_tenant_never_collide(
        self, floor: Floor, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With the random draw forced to repeat, the second agent gets another code."""
        await floor.person("alice")
        await floor.person("bob")
        draws = iter([42, 42, 42, 7])
        monkeypatch.setattr("transact.correlation.codes.secrets.randbelow", lambda _: next(draws))
        assert await new_code(floor, "alice") == "000042"
        assert await new_code(floor, "bob") == "000007"
