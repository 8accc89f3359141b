"""The voice service on the in-process bus with a scripted recognizer: sealed audio in, in
order and once; sealed keys and labelled transcripts out; the read-back; nothing kept
after a capture or call ends."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.integration.capture.conftest import KEY
from tests.integration.voice import deepgram_server
from tests.leaks import card_numbers_in
from tests.voice_fakes import ScriptedTranscriber, chunks, spoken
from transact import runtime, voice
from transact.contracts import Message
from transact.contracts.calls import (
    CallEnded,
    CallPlay,
    CallSecureMode,
    audio_clip_digest,
    audio_clip_key,
    keypad_context,
)
from transact.contracts.capture import (
    CaptureCancelled,
    CaptureProgress,
    CaptureRecaptureRequested,
    CaptureStarted,
)
from transact.contracts.voice import VoiceAudio, VoiceKeys, VoiceTranscript
from transact.kernel import Kernel
from transact.kernel.prompts import standard
from transact.kernel.settings import load_settings
from transact.voice.flow import Voice

TENANT = "ten_1"
CALL = "CA-voice"
CAPTURE = "pay_1"
GROUPS = ["four one one one", "one one one one", "one one one one", "one one one one"]
PAN = "4111111111111111"
TOPICS = (
    "voice.keys",
    "voice.transcript",
    "call.play",
    "capture.recapture_requested",
    "voice.audio",
)


@dataclass
class Ear:
    kernel: Kernel
    recognizer: ScriptedTranscriber
    published: list[Message] = field(default_factory=list)
    voices: list[Voice] = field(default_factory=list)
    sent: int = 0  # chunks numbered so far, as telephony numbers them per call

    @property
    def voice(self) -> Voice:
        (built,) = self.voices
        return built

    def events(self, topic: str) -> list[Message]:
        return [m for m in self.published if m.topic == topic]

    async def wait_for(self, topic: str, count: int = 1) -> list[Message]:
        for _ in range(400):
            if len(self.events(topic)) >= count:
                return self.events(topic)
            await asyncio.sleep(0.01)
        raise AssertionError(f"{topic}: saw {len(self.events(topic))}, wanted {count}")

    async def send(self, messages: list[VoiceAudio]) -> None:
        for message in messages:
            await self.kernel.bus.publish(message)

    def audio(
        self, utterances: int, *, call_id: str = CALL, pause_ms: int = 600, **keys: str
    ) -> list[VoiceAudio]:
        """The next chunks of the call: `utterances` words, keys pressed by chunk index."""
        made = chunks(
            self.kernel.vault,
            TENANT,
            call_id,
            CAPTURE,
            spoken(utterances, pause_ms=pause_ms),
            first_seq=self.sent + 1,
            keys={int(index[1:]): key for index, key in keys.items()},
        )
        self.sent += len(made)
        return made

    def keys(self) -> str:
        opened = []
        for message in self.events("voice.keys"):
            assert isinstance(message, VoiceKeys)
            blob = base64.b64decode(message.sealed)
            opened.append(self.kernel.vault.unseal(TENANT, blob, keypad_context(CALL)).decode())
        return "".join(opened)

    async def speech_capture(self, capture_id: str = CAPTURE) -> None:
        await self.kernel.bus.publish(
            CaptureStarted(
                tenant_id=TENANT,
                capture_id=capture_id,
                call_id=CALL,
                channel="phone",
                agent_id="usr_1",
                fields=["pan", "expiry", "cvv"],
                input="speech",
            )
        )
        await self.kernel.bus.publish(
            CallSecureMode(
                tenant_id=TENANT, call_id=CALL, on=True, capture_id=capture_id, input="speech"
            )
        )

    async def say_card_to_a_stream(self) -> None:
        """A speech capture of the four groups, heard by a streaming recognizer: a result
        is collected when the next audio goes, so the line stays open, as a call's does,
        until the last group is heard."""
        await self.speech_capture()
        await self.send(self.audio(4))
        for _ in range(100):
            if len(self.events("voice.keys")) >= 4:
                return
            await self.send(self.audio(0))
            await asyncio.sleep(0.1)

    async def pan_valid(self, capture_id: str = CAPTURE) -> None:
        await self.kernel.bus.publish(
            CaptureProgress(
                tenant_id=TENANT,
                capture_id=capture_id,
                call_id=CALL,
                field="pan",
                event="completed",
                digits=16,
                complete=True,
                valid=True,
                brand="visa",
                last4="1111",
            )
        )


@pytest.fixture
async def ear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Ear]:
    recognizer = ScriptedTranscriber()
    monkeypatch.setitem(voice.ENGINES, "scripted", lambda: recognizer)
    async with listening(tmp_path, monkeypatch, recognizer, voice_engine="scripted") as the_ear:
        yield the_ear


@contextlib.asynccontextmanager
async def listening(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    recognizer: ScriptedTranscriber,
    **overrides: Any,
) -> AsyncIterator[Ear]:
    """The voice service running with `overrides`; `recognizer` makes the audio (and,
    as the `scripted` engine, hears it)."""
    voices: list[Voice] = []
    made = Voice.__init__

    def remember(self: Voice, *args: Any, **kwargs: Any) -> None:
        made(self, *args, **kwargs)
        voices.append(self)

    monkeypatch.setattr(Voice, "__init__", remember)
    settings = load_settings(
        master_key=KEY,
        database_url=f"sqlite+aiosqlite:///{tmp_path}/transact.db",
        data_dir=tmp_path,
        **overrides,
    )
    kernel, app = runtime.build(settings, ["voice"])
    await kernel.db.migrate()
    the_ear = Ear(kernel, recognizer, voices=voices)

    async def record(message: Message) -> None:
        the_ear.published.append(message)

    for topic in TOPICS:
        kernel.bus.subscribe(topic, "test-observer", record)
    async with app.router.lifespan_context(app):
        yield the_ear


def deepgram_deployment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: deepgram_server.ListenServer
) -> contextlib.AbstractAsyncContextManager[Ear]:
    """Voice with `TRANSACT_VOICE_ENGINE=deepgram` on the deployment's account, streaming
    to `server`."""
    return listening(
        tmp_path,
        monkeypatch,
        ScriptedTranscriber(),
        voice_engine="deepgram",
        deepgram_api_key=deepgram_server.KEY,
        deepgram_url=server.url,
    )


async def test_a_cloud_recognizer_hears_a_capture_over_its_own_protocol(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`TRANSACT_VOICE_ENGINE=deepgram`: the same capture, heard by a real server that
    speaks Deepgram's live audio protocol, one scripted answer a second of audio."""
    script = [[group] for group in GROUPS]
    with deepgram_server.listen_server(deepgram_server.ListenServer(script=script)) as server:
        async with deepgram_deployment(tmp_path, monkeypatch, server) as cloud:
            await cloud.say_card_to_a_stream()
            keys = await cloud.wait_for("voice.keys", 4)
            assert cloud.keys() == PAN
            assert all(m.source == "speech" for m in keys)  # type: ignore[attr-defined]
            labels = [m.text for m in cloud.events("voice.transcript")]  # type: ignore[attr-defined]
            assert labels == ["[card number: 4 digits]"] * 4
        assert len(server.queries) == 1, "one stream for the card number"
        assert server.queries[0]["numerals"] == "true"


async def test_spoken_groups_become_sealed_keys_in_order_and_once(ear: Ear) -> None:
    await ear.speech_capture()
    ear.recognizer.say(*GROUPS)
    audio = ear.audio(4)
    # The bus redelivers and reorders: every chunk twice, neighbours swapped.
    shuffled = []
    for i in range(0, len(audio) - 1, 2):
        shuffled += [audio[i + 1], audio[i], audio[i + 1]]
    shuffled += audio[len(audio) // 2 * 2 :] + audio[:3]
    await ear.send(shuffled)
    keys = await ear.wait_for("voice.keys", 4)
    await asyncio.sleep(0.2)
    assert len(ear.events("voice.keys")) == 4
    assert ear.keys() == PAN
    assert [m.seq for m in keys] == [1, 2, 3, 4]  # type: ignore[attr-defined]
    assert {m.epoch for m in keys} == {keys[0].epoch}  # type: ignore[attr-defined]
    assert all(m.source == "speech" and m.capture_id == CAPTURE for m in keys)  # type: ignore[attr-defined]
    assert ear.recognizer.modes == ["digits"] * 4


async def test_the_agent_reads_labels_and_no_message_carries_the_card(ear: Ear) -> None:
    await ear.speech_capture()
    ear.recognizer.say(*GROUPS)
    await ear.send(ear.audio(4))
    transcripts = await ear.wait_for("voice.transcript", 4)
    texts = [m.text for m in transcripts if isinstance(m, VoiceTranscript)]
    assert texts == ["[card number: 4 digits]"] * 4
    assert all(m.call_id == CALL and m.field == "pan" for m in transcripts)  # type: ignore[attr-defined]
    everything = " ".join(m.model_dump_json() for m in ear.published)
    assert PAN not in everything
    assert card_numbers_in(everything) == []
    # Sealed keys are random base64, message ids and the epoch random hex, time stamps
    # digits: any may hold "4111" by chance (sealed keys once did, a message id or time
    # stamp later), so only what a person could read is searched.
    readable = re.sub(r'"(sealed|id|epoch|occurred_at)":"[^"]*"', r'"\1":""', everything)
    assert not re.search(r"four one one one|4111", readable)


async def test_a_valid_card_number_is_read_back_and_no_asks_for_it_again(ear: Ear) -> None:
    await ear.speech_capture()
    ear.recognizer.say("four one one one")
    await ear.send(ear.audio(1))
    await ear.wait_for("voice.keys")
    await ear.pan_valid()
    (play,) = await ear.wait_for("call.play")
    assert isinstance(play, CallPlay)
    assert play.call_id == CALL
    for digest in play.clips:  # telephony finds every clip in the cache, by its name
        clip = await ear.kernel.cache.get(audio_clip_key(digest))
        assert clip is not None
        assert audio_clip_digest(clip) == digest

    ear.recognizer.say("no")
    await ear.send(ear.audio(1))
    (asked,) = await ear.wait_for("capture.recapture_requested")
    assert isinstance(asked, CaptureRecaptureRequested)
    assert (asked.capture_id, asked.field) == (CAPTURE, "pan")
    assert ear.recognizer.modes == ["digits", "free"]  # "no" is heard in free mode
    await ear.wait_for("call.play", 2)  # "Please say the card number again."
    assert len(ear.events("voice.keys")) == 1
    digits_stream = ear.recognizer.opened[0]
    assert digits_stream.mode == "digits"
    assert digits_stream.closed, "the answer's stream replaced the digits stream, closed"


async def refuse(ear: Ear, field: str, reason: str) -> None:
    await ear.kernel.bus.publish(
        CaptureProgress(
            tenant_id=TENANT,
            capture_id=CAPTURE,
            call_id=CALL,
            field=field,
            event="rejected",
            digits=0,
            complete=False,
            valid=False,
            reason=reason,
        )
    )


async def test_a_refused_spoken_field_is_explained_in_words(ear: Ear) -> None:
    """A card number heard wrong fails Luhn: the speaking customer is told to try again
    (telephony's low tone alone means little to someone who did not press a key)."""
    await ear.speech_capture()
    ear.recognizer.say(*GROUPS)
    await ear.send(ear.audio(4))
    await ear.wait_for("voice.keys", 4)
    await refuse(ear, "pan", "fails the Luhn check")
    (play,) = await ear.wait_for("call.play")
    assert isinstance(play, CallPlay)
    invalid_pan = standard("en", "invalid_pan")
    assert invalid_pan is not None
    assert play.clips == [audio_clip_digest(invalid_pan)]
    assert play.barge_in, "the customer may start again over it"

    await refuse(ear, "pan", "fails the Luhn check")  # twice: the keypad is offered too
    plays = await ear.wait_for("call.play", 2)
    keypad = standard("en", "speech_keypad")
    assert keypad is not None
    assert plays[1].clips[0] == play.clips[0]  # type: ignore[attr-defined]
    assert plays[1].clips[-1] == audio_clip_digest(keypad)  # type: ignore[attr-defined]
    labels = [m.text for m in ear.events("voice.transcript")]  # type: ignore[attr-defined]
    assert labels[-1] == "[card number: keypad offered]"

    await refuse(ear, "expiry", "card has expired")
    plays = await ear.wait_for("call.play", 3)
    expired = standard("en", "card_expired")
    assert expired is not None
    assert plays[2].clips == [audio_clip_digest(expired)]  # type: ignore[attr-defined]


async def test_a_keypad_capture_gets_no_words_from_voice(ear: Ear) -> None:
    await ear.speech_capture()
    ear.recognizer.say("four one one one")
    await ear.send(ear.audio(1))
    await ear.wait_for("voice.keys")
    await ear.kernel.bus.publish(
        CallSecureMode(tenant_id=TENANT, call_id=CALL, on=True, capture_id=CAPTURE, input="keypad")
    )
    await refuse(ear, "pan", "fails the Luhn check")
    await asyncio.sleep(0.2)
    assert ear.events("call.play") == []


async def test_pressing_1_confirms_and_the_next_field_is_heard_as_digits(ear: Ear) -> None:
    await ear.speech_capture()
    ear.recognizer.say(*GROUPS)
    await ear.send(ear.audio(4))
    await ear.wait_for("voice.keys", 4)
    await ear.pan_valid()
    await ear.wait_for("call.play")
    ear.recognizer.say("twelve twenty eight")
    later = ear.audio(1, k0="1")
    await ear.send(later)
    await ear.wait_for("voice.keys", 5)
    assert ear.keys() == PAN + "1228"
    assert ear.recognizer.modes[-1] == "digits"
    assert not ear.events("capture.recapture_requested")
    answers = [m.text for m in ear.events("voice.transcript")]  # type: ignore[attr-defined]
    assert "[card number: yes]" in answers


async def stream_opened(listener: Voice) -> None:
    """Wait until the call's recognizer stream is open (a worker thread opens it)."""
    for _ in range(1000):
        state = listener.calls.get((TENANT, CALL))
        if state and state.listening and state.listening.session:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no recognizer stream was opened")


async def test_a_cancelled_capture_drops_what_the_recognizer_heard(ear: Ear) -> None:
    await ear.speech_capture()
    ear.recognizer.say("four one one one")
    audio = ear.audio(1, pause_ms=1000)
    await ear.send(audio[:3])  # the words, not yet the pause that ends them
    listener = ear.voice
    await stream_opened(listener)
    await ear.kernel.bus.publish(
        CaptureCancelled(tenant_id=TENANT, capture_id=CAPTURE, call_id=CALL, reason="agent")
    )
    for _ in range(100):
        if listener.calls[(TENANT, CALL)].listening is None:
            break
        await asyncio.sleep(0.01)
    sessions = ear.recognizer.sessions
    await ear.send(audio[3:])  # late audio of the cancelled capture opens nothing
    await asyncio.sleep(0.3)
    assert listener.calls[(TENANT, CALL)].listening is None
    assert ear.recognizer.sessions == sessions
    assert not ear.events("voice.keys")
    # The stream was closed, not only forgotten (a cloud stream is a socket).
    assert [session.closed for session in ear.recognizer.opened] == [True]


async def test_the_end_of_the_call_forgets_it(ear: Ear) -> None:
    await ear.speech_capture()
    ear.recognizer.say("four one one one")
    audio = ear.audio(1)
    await ear.send(audio[:2])
    listener = ear.voice
    await stream_opened(listener)
    await ear.kernel.bus.publish(CallEnded(tenant_id=TENANT, call_id=CALL, reason="hangup"))
    for _ in range(100):
        if not listener.listening_to(TENANT, CALL):
            break
        await asyncio.sleep(0.01)
    await ear.send(audio[2:])
    await asyncio.sleep(0.3)
    assert not listener.listening_to(TENANT, CALL)
    assert not ear.events("voice.keys")
    assert [session.closed for session in ear.recognizer.opened] == [True]


async def test_audio_that_does_not_open_is_dropped(ear: Ear) -> None:
    await ear.speech_capture()
    ear.recognizer.say("four one one one")
    audio = ear.audio(1, call_id="CA-other")
    # Sealed for another call: moved onto this one, it does not open.
    moved = [m.model_copy(update={"call_id": CALL}) for m in audio]
    await ear.send(moved)
    await asyncio.sleep(0.4)
    assert ear.recognizer.fed == 0
    assert not ear.events("voice.keys")
