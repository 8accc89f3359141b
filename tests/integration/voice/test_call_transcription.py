"""A tenant's call transcription on the embedded runtime (gateway, auth, correlation,
capture, telephony, voice over real media WebSockets) with a scripted recognizer: with
the setting on, what the customer says outside a capture is stored and pushed with card
data labelled; with it off nothing is streamed or stored; during a capture nothing is
transcribed; the spoken card number appears in no message, row or response."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.e2e.test_phone_payment import PASSWORD, bearer
from tests.integration.telephony.conftest import TOPICS, Line, serving
from tests.integration.telephony.test_secure_mode import play
from tests.leaks import card_numbers_in, database_dump
from tests.voice_fakes import ScriptedTranscriber, spoken
from transact import voice
from transact.auth import Accounts, SigningKeys
from transact.contracts import Message
from transact.contracts.voice import VoiceAudio, VoiceTranscript, unpack_chunk, voice_audio_context
from transact.kernel.audio import SAMPLE_RATE
from transact.telephony.simulate import customer_audio

PAN = "4111111111111111"
WORDS = "zero one two three four five six seven eight nine".split()
SERVICES = ["gateway", "auth", "correlation", "capture", "telephony", "voice"]


def said(digits: str) -> str:
    return " ".join(WORDS[int(d)] for d in digits)


@dataclass
class Centre:
    line: Line
    client: httpx.AsyncClient
    recognizer: ScriptedTranscriber
    responses: list[str]

    async def as_user(self, username: str) -> dict[str, str]:
        return await bearer(self.client, username)

    async def get(self, path: str, headers: dict[str, str]) -> httpx.Response:
        response = await self.client.get(path, headers=headers)
        self.responses.append(response.text)
        return response

    def transcripts(self) -> list[VoiceTranscript]:
        return [m for m in self.line.events("voice.transcript") if isinstance(m, VoiceTranscript)]

    def chunks(self) -> list[VoiceAudio]:
        return [m for m in self.line.events("voice.audio") if isinstance(m, VoiceAudio)]

    def keys_in(self, chunk: VoiceAudio) -> str:
        blob = base64.b64decode(chunk.sealed)
        context = voice_audio_context(chunk.call_id, chunk.seq)
        return unpack_chunk(self.line.kernel.vault.unseal(self.line.tenant_id, blob, context))[0]

    async def rows(self, table: str) -> list[Any]:
        async with self.line.kernel.db.engine.connect() as conn:
            return list((await conn.execute(text(f"SELECT * FROM {table}"))).all())  # noqa: S608

    async def transcribe_calls(self, on: bool) -> None:
        root = await self.as_user("root")
        put = await self.client.put(
            "/api/v1/voice/settings", json={"transcribe_calls": on}, headers=root
        )
        assert put.status_code == 200, put.text

    async def transcript(self, call_id: str, headers: dict[str, str], count: int) -> Any:
        """The call's transcript once it has `count` utterances (voice learns the call's
        holder from the bus)."""
        body: Any = None
        for _ in range(250):
            response = await self.get(f"/api/v1/calls/{call_id}/transcript", headers)
            body = response.json()
            if response.status_code == 200 and len(body["utterances"]) >= count:
                return body
            await asyncio.sleep(0.02)
        raise AssertionError(f"no transcript of {count} utterances: {body}")


@pytest.fixture
async def centre(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Centre]:
    recognizer = ScriptedTranscriber()
    monkeypatch.setitem(voice.ENGINES, "scripted", lambda: recognizer)
    async with serving(
        tmp_path, SERVICES, media_pair_timeout=30.0, voice_engine="scripted"
    ) as line:

        async def record(message: Message) -> None:
            if message.topic not in TOPICS:  # those the line records already
                line.published.append(message)

        # Every message on the bus, so none can carry the card number unseen.
        for topic in Message.topics():
            line.kernel.bus.subscribe(topic, "test-everything", record)
        accounts = Accounts(line.kernel, SigningKeys(line.kernel))
        for username, role in (
            ("alice", "agent"),
            ("bob", "agent"),
            ("sue", "supervisor"),
            ("root", "admin"),
        ):
            await accounts.create_user(line.tenant_id, username, role, PASSWORD)
        base = line.url.replace("ws://", "http://")
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            yield Centre(line, client, recognizer, [])


def assert_no_card_anywhere(centre: Centre, dump: str) -> None:
    published = " ".join(m.model_dump_json() for m in centre.line.published)
    answered = " ".join(centre.responses)
    for where in (published, dump, answered):
        assert PAN not in where
        assert card_numbers_in(where) == []
        assert said(PAN) not in where


async def test_the_setting_is_off_until_an_admin_turns_it_on_and_is_audited(
    centre: Centre,
) -> None:
    alice, root = await centre.as_user("alice"), await centre.as_user("root")
    got = await centre.client.get("/api/v1/voice/settings", headers=alice)
    assert got.json() == {"transcribe_calls": False, "available": True}

    refused = await centre.client.put(
        "/api/v1/voice/settings", json={"transcribe_calls": True}, headers=alice
    )
    assert refused.status_code == 403
    for bad in ({"transcribe_calls": "yes"}, {}, {"transcribe_calls": True, "record": True}):
        answer = await centre.client.put("/api/v1/voice/settings", json=bad, headers=root)
        assert answer.status_code == 422, bad
    assert (await centre.client.get("/api/v1/voice/settings", headers=alice)).json()[
        "transcribe_calls"
    ] is False

    await centre.transcribe_calls(True)
    assert (await centre.client.get("/api/v1/voice/settings", headers=alice)).json()[
        "transcribe_calls"
    ] is True
    trail = (await centre.client.get("/api/v1/audit", headers=root)).json()
    changes = [r for r in trail if r["action"] == "voice.settings_changed"]
    assert len(changes) == 1
    assert changes[0]["details"] == {"transcribe_calls": True}


async def test_a_transcribed_call_is_stored_and_pushed_with_the_card_labelled(
    centre: Centre,
) -> None:
    await centre.transcribe_calls(True)
    centre.recognizer.say(
        "Hello, I'd like to pay my bill.",
        f"My card is {said(PAN)}.",
        "It expires twelve twenty eight and the code is seven three seven.",
    )
    customer, _ = await centre.line.open_call("CA-told", agent="alice")
    await centre.line.wait_for("call.assigned")
    await centre.line.wait_for("voice.transcribe")  # telephony streams from here on
    await play(customer, spoken(3))

    await centre.line.wait_for("voice.transcript", 3)
    pushed = centre.transcripts()
    assert [m.text for m in pushed] == [
        "Hello, I'd like to pay my bill.",
        "My card is [card number: 16 digits].",
        "It expires [expiry] and the code is [security code].",
    ]
    assert {(m.source, m.capture_id, m.call_id) for m in pushed} == {("call", None, "CA-told")}
    assert [m.seq for m in pushed] == [1, 2, 3]
    assert centre.recognizer.modes == ["free"] * 3
    chunks = centre.chunks()
    assert {(c.mode, c.capture_id) for c in chunks} == {("free", None)}
    assert [c.seq for c in chunks] == list(range(1, len(chunks) + 1))

    alice = await centre.as_user("alice")
    body = await centre.transcript("CA-told", alice, 3)
    assert [u["text"] for u in body["utterances"]] == [m.text for m in pushed]
    assert [u["seq"] for u in body["utterances"]] == [1, 2, 3]
    supervisor = await centre.transcript("CA-told", await centre.as_user("sue"), 3)
    assert supervisor == body
    bob = await centre.as_user("bob")
    assert (await centre.get("/api/v1/calls/CA-told/transcript", bob)).status_code == 404
    assert (await centre.get("/api/v1/calls/CA-nope/transcript", alice)).status_code == 404

    # Stored: the redacted text only; no audio column anywhere.
    stored = await centre.rows("voice_transcripts")
    assert [row.text for row in stored] == [m.text for m in pushed]
    await customer.close()
    await centre.line.wait_for("call.ended")
    assert_no_card_anywhere(centre, await database_dump(centre.line.kernel.db.engine))


async def test_keys_pressed_outside_a_capture_never_reach_the_transcript(centre: Centre) -> None:
    await centre.transcribe_calls(True)
    customer, _ = await centre.line.open_call("CA-keys", agent="alice")
    await centre.line.wait_for("voice.transcribe")
    audio = customer_audio(PAN[:8], 100, 400, None)
    await play(customer, audio)
    await centre.line.wait_for("voice.audio", len(audio) // 1600 - 1)
    await asyncio.sleep(0.3)
    assert all(centre.keys_in(chunk) == "" for chunk in centre.chunks())
    assert not any(re.search(r"\d", m.text) for m in centre.transcripts())
    assert centre.line.events("call.keys_outside_capture")  # dropped, as without transcription


async def test_with_the_setting_off_nothing_is_streamed_or_stored(centre: Centre) -> None:
    centre.recognizer.say(f"My card is {said(PAN)}.")
    customer, _ = await centre.line.open_call("CA-off", agent="alice")
    await centre.line.wait_for("call.assigned")
    await play(customer, spoken(2))
    await asyncio.sleep(0.5)
    assert centre.chunks() == []
    assert centre.transcripts() == []
    assert centre.line.events("voice.transcribe") == []
    assert centre.recognizer.sessions == 0
    alice, sue = await centre.as_user("alice"), await centre.as_user("sue")
    for who in (alice, sue):
        assert (await centre.get("/api/v1/calls/CA-off/transcript", who)).status_code == 404
    await customer.close()
    await centre.line.wait_for("call.ended")
    await asyncio.sleep(0.2)
    for table in ("voice_calls", "voice_transcripts"):
        assert await centre.rows(table) == []


async def test_during_a_capture_nothing_is_transcribed(centre: Centre) -> None:
    await centre.transcribe_calls(True)
    customer, _ = await centre.line.open_call("CA-capture", agent="alice")
    await centre.line.wait_for("voice.transcribe")
    alice = await centre.as_user("alice")
    centre.recognizer.say("Before the payment.")
    seq = await play(customer, spoken(1))
    await centre.line.wait_for("voice.transcript")

    payment_id = ""
    for _ in range(100):  # capture learns of the assignment from the bus
        opened = await centre.client.post(
            "/api/v1/calls/CA-capture/payments",
            json={"amount": 4200, "currency": "GBP", "reference": "INV-1"},
            headers=alice,
        )
        if opened.status_code != 404:
            payment_id = opened.json()["id"]
            break
        await asyncio.sleep(0.05)
    assert payment_id, opened.text
    await centre.line.wait_for("call.secure_mode")
    await asyncio.sleep(0.1)
    before = len(centre.chunks())
    assert centre.chunks()[-1].last  # the free stream paused: voice finished its utterance

    # Secure mode: the customer speaks and keys the card; none of it goes to voice.
    centre.recognizer.say(f"My card is {said(PAN)}.")
    seq = await play(customer, spoken(2), seq)
    seq = await play(customer, customer_audio(PAN, 100, 300, None), seq)
    await asyncio.sleep(0.5)
    assert len(centre.chunks()) == before
    assert len(centre.transcripts()) == 1
    assert centre.recognizer.modes == ["free"]

    cancelled = await centre.client.post(f"/api/v1/payments/{payment_id}/cancel", headers=alice)
    assert cancelled.status_code == 200, cancelled.text
    await centre.line.wait_for("call.secure_mode", 2)
    # After the capture the stream goes on, numbered on from where it paused.
    centre.recognizer.script.clear()
    centre.recognizer.say("Thanks, bye.")
    await play(customer, spoken(1), seq)
    await centre.line.wait_for("voice.transcript", 2)
    assert [m.text for m in centre.transcripts()] == ["Before the payment.", "Thanks, bye."]
    chunks = centre.chunks()
    assert [c.seq for c in chunks] == list(range(1, len(chunks) + 1))
    body = await centre.transcript("CA-capture", alice, 2)
    assert [u["text"] for u in body["utterances"]] == ["Before the payment.", "Thanks, bye."]
    assert_no_card_anywhere(centre, await database_dump(centre.line.kernel.db.engine))


async def test_a_spoken_capture_is_heard_as_digits_and_never_kept(centre: Centre) -> None:
    await centre.transcribe_calls(True)
    customer, _ = await centre.line.open_call("CA-spoken", agent="alice")
    await centre.line.wait_for("voice.transcribe")
    alice = await centre.as_user("alice")
    for _ in range(100):
        opened = await centre.client.post(
            "/api/v1/calls/CA-spoken/payments",
            json={"amount": 4200, "currency": "GBP", "reference": "INV-2", "input": "speech"},
            headers=alice,
        )
        if opened.status_code != 404:
            break
        await asyncio.sleep(0.05)
    assert opened.status_code == 201, opened.text
    await centre.line.wait_for("call.secure_mode")
    centre.recognizer.say(said(PAN[:4]), said(PAN[4:8]))
    await play(customer, spoken(2))
    await centre.line.wait_for("voice.transcript", 2)
    pushed = centre.transcripts()
    assert [(m.source, m.text) for m in pushed] == [("capture", "[card number: 4 digits]")] * 2
    assert centre.recognizer.modes == ["digits", "digits"]
    during = [c for c in centre.chunks() if c.capture_id is not None]
    assert during
    assert {c.mode for c in during} == {"digits"}
    assert await centre.rows("voice_transcripts") == []  # a capture is pushed, never kept


async def test_the_last_words_before_a_hang_up_are_transcribed(centre: Centre) -> None:
    await centre.transcribe_calls(True)
    centre.recognizer.say("I will pay by card.", "Sorry, I have to go")
    customer, _ = await centre.line.open_call("CA-cut", agent="alice")
    await centre.line.wait_for("voice.transcribe")
    pause = len(spoken(0)) + SAMPLE_RATE * 600 // 1000  # what spoken() adds after the last words
    cut_off = spoken(2)[:-pause]  # the customer hangs up mid-sentence: no pause at the end
    await play(customer, cut_off)
    await customer.close()
    await centre.line.wait_for("call.ended")

    await centre.line.wait_for("voice.transcript", 2)
    assert [m.text for m in centre.transcripts()] == ["I will pay by card.", "Sorry, I have to go"]
    assert [c.ending for c in centre.chunks()] == [False] * (len(centre.chunks()) - 1) + [True]
    alice = await centre.as_user("alice")
    body = await centre.transcript("CA-cut", alice, 2)
    assert [u["text"] for u in body["utterances"]][-1] == "Sorry, I have to go"
