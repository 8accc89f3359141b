"""The telephony side of self-service calls (customParameters.ivr): no agent leg awaited,
menu keys sealed to the flow, prompts played on command with marks, barge-in, hang-up."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

from websockets.asyncio.client import ClientConnection

from tests.integration.telephony.conftest import Line
from tests.integration.telephony.test_media_streams import closed_with
from tests.integration.telephony.test_secure_mode import play, secure
from transact.contracts import Message
from transact.contracts.calls import (
    CallHangup,
    CallIvrKey,
    CallPlay,
    CallPromptDone,
    audio_clip_digest,
    audio_clip_key,
    ivr_key_context,
)
from transact.contracts.capture import CaptureProgress
from transact.telephony.simulate import customer_audio

WATCHED = ("call.ivr_key", "call.prompt_done")
PROMPT = bytes(range(256)) * 10  # 2560 bytes of mu-law: 16 frames


async def watch(line: Line) -> None:
    async def record(message: Message) -> None:
        line.published.append(message)

    for topic in WATCHED:
        line.kernel.bus.subscribe(topic, "test-observer", record)


async def self_service(line: Line, call_id: str) -> ClientConnection:
    await watch(line)
    customer, _ = await line.open_call(call_id, agent_leg=False, ivr="bills")
    return customer


async def order_play(line: Line, call_id: str, mark: str, *, barge_in: bool = True) -> None:
    clips = [PROMPT[:1000], PROMPT[1000:]]
    for clip in clips:
        await line.kernel.cache.set(audio_clip_key(audio_clip_digest(clip)), clip)
    await line.kernel.bus.publish(
        CallPlay(
            tenant_id=line.tenant_id,
            call_id=call_id,
            clips=[audio_clip_digest(c) for c in clips],
            mark=mark,
            barge_in=barge_in,
        )
    )


async def received(ws: ClientConnection, until: str, seconds: float = 5.0) -> list[dict[str, Any]]:
    """Messages sent to the platform, up to and including the first `until` event."""
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(seconds):
        while not got or got[-1]["event"] != until:
            got.append(json.loads(await ws.recv()))
    return got


def opened(line: Line, message: CallIvrKey) -> str:
    blob = base64.b64decode(message.sealed)
    return line.kernel.vault.unseal(line.tenant_id, blob, ivr_key_context(message.call_id)).decode()


async def test_a_self_service_call_waits_for_no_agent(line: Line) -> None:
    await self_service(line, "CA-ss-alone")
    started = line.events("call.started")[0]
    assert started.ivr == "bills"  # type: ignore[attr-defined]
    await asyncio.sleep(line.kernel.settings.media_pair_timeout + 0.5)
    assert not line.events("call.ended")


async def test_keys_outside_secure_mode_go_sealed_to_the_flow_in_order(line: Line) -> None:
    customer = await self_service(line, "CA-ss-keys")
    await play(customer, customer_audio("12#", 100, 400, None))
    keys = await line.wait_for("call.ivr_key", 3)
    assert [m.seq for m in keys] == [1, 2, 3]  # type: ignore[attr-defined]
    assert "".join(opened(line, m) for m in keys) == "12#"  # type: ignore[arg-type]
    assert "12#" not in " ".join(m.model_dump_json() for m in keys)
    assert not line.events("call.keys_outside_capture")


async def test_in_secure_mode_keys_go_to_capture_not_the_flow(line: Line) -> None:
    customer = await self_service(line, "CA-ss-secure")
    await secure(line, "CA-ss-secure")
    await play(customer, customer_audio("42", 100, 400, None))
    await line.wait_for("call.keypad", 2)
    await asyncio.sleep(0.2)
    assert not line.events("call.ivr_key")


async def test_a_prompt_is_sent_then_its_mark_and_the_echo_ends_it(line: Line) -> None:
    customer = await self_service(line, "CA-ss-play")
    await order_play(line, "CA-ss-play", "ivr-1")
    sent = await received(customer, "mark")
    audio = b"".join(base64.b64decode(m["media"]["payload"]) for m in sent if m["event"] == "media")
    assert audio == PROMPT
    assert all(len(base64.b64decode(m["media"]["payload"])) <= 160 for m in sent[:-1])
    assert sent[-1]["mark"]["name"] == "ivr-1"
    await customer.send(json.dumps({"event": "mark", "mark": {"name": "ivr-1"}}))
    done = (await line.wait_for("call.prompt_done"))[0]
    assert isinstance(done, CallPromptDone)
    assert (done.mark, done.interrupted) == ("ivr-1", False)


async def test_a_key_during_a_barge_in_prompt_clears_it(line: Line) -> None:
    customer = await self_service(line, "CA-ss-barge")
    await order_play(line, "CA-ss-barge", "ivr-1")
    await received(customer, "mark")
    await play(customer, customer_audio("5", 100, 300, None))
    assert (await received(customer, "clear"))[-1]["event"] == "clear"
    done = (await line.wait_for("call.prompt_done"))[0]
    assert (done.mark, done.interrupted) == ("ivr-1", True)  # type: ignore[attr-defined]
    assert opened(line, (await line.wait_for("call.ivr_key"))[0]) == "5"  # type: ignore[arg-type]


async def test_a_prompt_without_barge_in_plays_through_keys(line: Line) -> None:
    customer = await self_service(line, "CA-ss-nobarge")
    await order_play(line, "CA-ss-nobarge", "ivr-1", barge_in=False)
    await received(customer, "mark")
    await play(customer, customer_audio("5", 100, 300, None))
    await line.wait_for("call.ivr_key")
    await asyncio.sleep(0.2)
    assert not line.events("call.prompt_done")


async def test_a_prompt_whose_audio_is_missing_ends_at_once(line: Line) -> None:
    await self_service(line, "CA-ss-missing")
    await line.kernel.bus.publish(
        CallPlay(tenant_id=line.tenant_id, call_id="CA-ss-missing", clips=["0" * 64], mark="m")
    )
    done = (await line.wait_for("call.prompt_done"))[0]
    assert (done.mark, done.interrupted) == ("m", True)  # type: ignore[attr-defined]


async def test_hang_up_ends_the_call_as_completed(line: Line) -> None:
    customer = await self_service(line, "CA-ss-bye")
    await line.kernel.bus.publish(CallHangup(tenant_id=line.tenant_id, call_id="CA-ss-bye"))
    code, reason = await closed_with(customer)
    assert (code, reason) == (1000, "call ended")
    ended = (await line.wait_for("call.ended"))[0]
    assert ended.reason == "completed"  # type: ignore[attr-defined]


async def test_verdicts_are_spoken_by_the_flow_not_beeped(line: Line) -> None:
    customer = await self_service(line, "CA-ss-quiet")
    await secure(line, "CA-ss-quiet")
    await line.kernel.bus.publish(
        CaptureProgress(
            tenant_id=line.tenant_id,
            capture_id="cap_1",
            call_id="CA-ss-quiet",
            field="pan",
            event="completed",
            digits=16,
            complete=True,
            valid=True,
        )
    )
    await asyncio.sleep(0.3)
    await order_play(line, "CA-ss-quiet", "ivr-1")
    sent = await received(customer, "mark")
    audio = b"".join(base64.b64decode(m["media"]["payload"]) for m in sent if m["event"] == "media")
    assert audio == PROMPT  # no tone came before the prompt


async def test_a_malformed_flow_name_is_refused(line: Line) -> None:
    ws = await line.leg("customer")
    await ws.send(line.start("CA-ss-bad", ivr="no spaces please"))
    code, reason = await closed_with(ws)
    assert code == 1002
    assert "customParameters.ivr" in reason
