"""The phone journey with the card spoken: the agent opens a speech capture, the customer
says the card number in groups (read back: "ending four two four two", "yes"), the
expiry and the code; the sandbox PSP approves. The agent hears none of it and sees only
labels; no card number is stored or published. Then keypad and speech mixed in one
capture: the fields keyed stay when the agent switches to speech.

The recognizer is scripted (tests/voice_fakes.py): it "hears" the test's words at each
pause in the customer's audio, so this proves the whole path around recognition."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.e2e.test_phone_payment import PASSWORD, bearer, until
from tests.integration.capture.test_capture import future_expiry
from tests.integration.telephony.conftest import Line, serving
from tests.integration.telephony.test_media_streams import heard
from tests.integration.telephony.test_secure_mode import play
from tests.leaks import card_numbers_in, database_dump
from tests.voice_fakes import ScriptedTranscriber, spoken
from transact import voice
from transact.auth import Accounts, SigningKeys
from transact.contracts.voice import VoiceTranscript
from transact.telephony.audio import FRAME_SAMPLES
from transact.telephony.simulate import customer_audio

PAN = "4242424242424242"
WORDS = "zero one two three four five six seven eight nine".split()
SERVICES = ["gateway", "auth", "correlation", "capture", "psp", "telephony", "voice"]


def said(digits: str) -> str:
    return " ".join(WORDS[int(d)] for d in digits)


Centre = tuple[Line, httpx.AsyncClient, ScriptedTranscriber]


@pytest.fixture
async def centre(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Centre]:
    recognizer = ScriptedTranscriber()
    monkeypatch.setitem(voice.ENGINES, "scripted", lambda: recognizer)
    async with serving(
        tmp_path, SERVICES, media_pair_timeout=30.0, voice_engine="scripted"
    ) as line:
        accounts = Accounts(line.kernel, SigningKeys(line.kernel))
        await accounts.create_user(line.tenant_id, "alice", "agent", PASSWORD)
        await accounts.create_user(line.tenant_id, "root", "admin", PASSWORD)
        base = line.url.replace("ws://", "http://")
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            root = await bearer(client, "root")
            routes = await client.put(
                "/api/v1/psp/routes", json={"routes": [{"connector": "sandbox"}]}, headers=root
            )
            assert routes.status_code == 200, routes.text
            yield line, client, recognizer


async def open_payment(
    client: httpx.AsyncClient, alice: dict[str, str], call_id: str, **body: str
) -> str:
    for _ in range(100):  # capture learns of the assignment from the bus
        opened = await client.post(
            f"/api/v1/calls/{call_id}/payments",
            json={"amount": 4200, "currency": "GBP", "reference": "INV-42", **body},
            headers=alice,
        )
        if opened.status_code != 404:
            break
        await asyncio.sleep(0.05)
    assert opened.status_code == 201, opened.text
    return str(opened.json()["id"])


def field(payment: dict[str, object], name: str) -> dict[str, object]:
    fields = payment["fields"]
    assert isinstance(fields, list)
    return next(f for f in fields if f["name"] == name)


async def test_a_spoken_card_is_read_back_paid_and_heard_by_nobody(centre: Centre) -> None:
    line, client, recognizer = centre
    alice = await bearer(client, "alice")
    assert (await client.get("/api/v1/voice/status", headers=alice)).json()["speech"] is True
    customer, agent = await line.open_call("CA-said", agent="alice")
    assert agent is not None
    payment_id = await open_payment(client, alice, "CA-said", input="speech")
    path = f"/api/v1/payments/{payment_id}"
    assert (await client.get(path, headers=alice)).json()["input"] == "speech"
    await line.wait_for("call.secure_mode")

    # The card number in four groups, each ended by a pause.
    recognizer.say(*(said(PAN[i : i + 4]) for i in range(0, 16, 4)))
    words = spoken(4)
    seq = await play(customer, words)
    agent_heard = await heard(agent, len(words) // FRAME_SAMPLES)
    await until(client, path, alice, lambda b: field(b, "pan")["status"] == "valid")
    await line.wait_for("call.play")  # "You entered a card ending in four two four two..."

    recognizer.say("yes", said(future_expiry()), said("737"))
    words = spoken(3)
    seq = await play(customer, words, seq)
    agent_heard = np.concatenate([agent_heard, await heard(agent, len(words) // FRAME_SAMPLES)])
    ready = await until(client, path, alice, lambda b: b["status"] == "ready")
    assert ready["card"] == {"brand": "visa", "bin": "424242", "last4": "4242"}
    assert recognizer.modes == ["digits"] * 4 + ["free", "digits", "digits"]

    submitted = await client.post(f"{path}/submit", headers=alice)
    assert submitted.status_code == 202
    done = await until(client, path, alice, lambda b: b["status"] not in ("ready", "submitted"))
    assert done["status"] == "authorized", done

    # The agent heard comfort noise only, and read labels only.
    loud = float(np.sqrt(np.mean(words.astype(np.float64) ** 2)))
    assert float(np.sqrt(np.mean(agent_heard.astype(np.float64) ** 2))) < loud / 50
    texts = [m.text for m in line.events("voice.transcript") if isinstance(m, VoiceTranscript)]
    assert texts[:4] == ["[card number: 4 digits]"] * 4
    assert "[card number: yes]" in texts
    assert not any(re.search(r"\d{3,}", text) for text in texts)
    published = " ".join(m.model_dump_json() for m in line.published)
    assert PAN not in published
    assert card_numbers_in(published) == []
    assert card_numbers_in(await database_dump(line.kernel.db.engine)) == []


async def test_keyed_fields_stay_when_the_agent_switches_to_speech(centre: Centre) -> None:
    line, client, recognizer = centre
    alice = await bearer(client, "alice")
    customer, agent = await line.open_call("CA-mixed", agent="alice")
    assert agent is not None
    payment_id = await open_payment(client, alice, "CA-mixed")
    path = f"/api/v1/payments/{payment_id}"
    await line.wait_for("call.secure_mode")
    seq = await play(customer, customer_audio(PAN, 100, 400, None))
    await until(client, path, alice, lambda b: field(b, "pan")["status"] == "valid")

    bad = await client.post(f"{path}/input", json={"mode": "shout"}, headers=alice)
    assert bad.status_code == 422
    unknown = await client.post(
        "/api/v1/payments/pay_nope/input", json={"mode": "speech"}, headers=alice
    )
    assert unknown.status_code == 404
    switched = await client.post(f"{path}/input", json={"mode": "speech"}, headers=alice)
    assert switched.status_code == 200, switched.text
    assert switched.json()["input"] == "speech"
    assert field(switched.json(), "pan")["status"] == "valid"
    await line.wait_for("call.secure_mode", 2)

    recognizer.say(said(future_expiry()), said("737"))
    await play(customer, spoken(2), seq)
    ready = await until(client, path, alice, lambda b: b["status"] == "ready")
    assert [f["status"] for f in ready["fields"]] == ["valid", "valid", "valid"]
    assert not line.events("call.play")  # a keyed card number is not read back
    late = await client.post(f"{path}/input", json={"mode": "keypad"}, headers=alice)
    assert late.status_code == 200  # still open (ready): the mode may change until submit
    await client.post(f"{path}/submit", headers=alice)
    await until(client, path, alice, lambda b: b["status"] == "authorized")
    closed = await client.post(f"{path}/input", json={"mode": "speech"}, headers=alice)
    assert closed.status_code == 409
    assert closed.json()["error"]["code"] == "not_capturing"


def espeak_words(*texts: str) -> np.ndarray:
    """Each text rendered by espeak-ng at 8 kHz, loud, followed by a 900 ms pause."""
    from tests.dtmf_signals import pcm
    from tests.speech_corpus import espeak

    parts = [np.zeros(1600, dtype=np.int16)]
    for text in texts:
        speech = espeak(text, "en-us", 50, 150)
        speech = speech * (12000 / max(1.0, float(np.abs(speech).max())))
        parts += [pcm(speech), np.zeros(7200, dtype=np.int16)]
    return np.concatenate(parts)


async def settled(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], want: object
) -> dict[str, object]:
    body: dict[str, object] = {}
    for _ in range(600):  # the real recognizer decodes on one core: allow it time
        body = (await client.get(path, headers=headers)).json()
        if want(body):  # type: ignore[operator]
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} never got there: {body}")


@pytest.mark.speech_engine
async def test_the_real_recognizer_takes_a_spoken_card(tmp_path: Path) -> None:
    """The same journey through the offline recognizer itself, with espeak-ng's voice."""
    import importlib.util

    if importlib.util.find_spec("faster_whisper") is None:
        pytest.skip("faster-whisper is not installed")
    async with serving(tmp_path, SERVICES, media_pair_timeout=60.0, voice_engine="whisper") as line:
        accounts = Accounts(line.kernel, SigningKeys(line.kernel))
        await accounts.create_user(line.tenant_id, "alice", "agent", PASSWORD)
        await accounts.create_user(line.tenant_id, "root", "admin", PASSWORD)
        base = line.url.replace("ws://", "http://")
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            root = await bearer(client, "root")
            await client.put(
                "/api/v1/psp/routes", json={"routes": [{"connector": "sandbox"}]}, headers=root
            )
            alice = await bearer(client, "alice")
            customer, agent = await line.open_call("CA-real", agent="alice")
            assert agent is not None
            payment_id = await open_payment(client, alice, "CA-real", input="speech")
            path = f"/api/v1/payments/{payment_id}"
            await line.wait_for("call.secure_mode")
            seq = await play(
                customer, espeak_words(*(said(PAN[i : i + 4]) for i in range(0, 16, 4)))
            )
            await settled(client, path, alice, lambda b: field(b, "pan")["status"] == "valid")
            await line.wait_for("call.play", seconds=20)
            seq = await play(customer, espeak_words("yes"), seq)
            await asyncio.sleep(1.0)
            await play(customer, espeak_words(said(future_expiry()), said("737")), seq)
            ready = await settled(client, path, alice, lambda b: b["status"] == "ready")
            assert ready["card"] == {"brand": "visa", "bin": "424242", "last4": "4242"}
            await client.post(f"{path}/submit", headers=alice)
            done = await settled(client, path, alice, lambda b: b["status"] == "authorized")
            assert done["status"] == "authorized"
            published = " ".join(m.model_dump_json() for m in line.published)
            assert card_numbers_in(published) == []
