"""Voice's use cases: hear a call's sealed audio in order, turn what the customer says into
keys for card capture, read the card number back, and tell the agent what was said with
the card data taken out.

Everything here lives in memory, for as long as a call or capture does: audio is never
stored, and what a recognizer buffered is dropped the moment its capture or call ends.
The one thing kept is a tenant's call transcription outside captures, redacted first
(`transcription.CallTranscription`).
Each call has one worker task that feeds its recognizer session in a thread, one chunk
at a time and in the order telephony numbered them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import structlog

from transact.contracts.calls import CallPlay, keypad_context
from transact.contracts.capture import CaptureRecaptureRequested
from transact.contracts.voice import (
    TranscriptionMode,
    VoiceAudio,
    VoiceKeys,
    VoiceTranscript,
    unpack_chunk,
    voice_audio_context,
)
from transact.kernel import Kernel
from transact.kernel.audio import ulaw_decode
from transact.kernel.errors import VaultError
from transact.kernel.prompts import ClipShelf, silence, standard
from transact.kernel.sequence import InOrder
from transact.voice import domain
from transact.voice.recognizers import Recognizers
from transact.voice.transcriber import (
    RecognizerUnavailable,
    Transcriber,
    TranscriberSession,
    Transcript,
)
from transact.voice.transcription import CallTranscription

log = structlog.get_logger("transact.voice")

ENDED_CALLS_KEPT: Final = 10_000  # ended calls remembered, so late audio starts nothing
# How long a transcribed call that ended waits for its last audio (telephony sends it
# just before `call.ended`, but on another topic, which may overtake it).
LAST_WORDS_WAIT_S: Final = 10.0
LANGUAGE: Final = "en"
WORD_GAP_MS: Final = 60
PAUSE_MS: Final = 350
RECOGNIZER_DOWN: Final = "[speech recognizer unavailable: use the keypad]"


@dataclass(eq=False)
class Listening:
    """One capture's recognizer on a call. `confirming`: the card number was read back
    and the answer is awaited (heard in free mode: a digits recognizer cannot say yes)."""

    capture_id: str | None
    mode: TranscriptionMode
    session: TranscriberSession | None = None
    session_mode: TranscriptionMode | None = None
    confirming: bool = False
    asked: int = 0
    told_down: bool = False  # the agent was told the recognizer is unavailable


def _let_go(listening: Listening | None) -> None:
    """Drop a listening's stream unfinished, off the event loop: closing a cloud stream
    waits for its server."""
    if listening is not None and listening.session is not None:
        session, listening.session = listening.session, None
        asyncio.get_running_loop().run_in_executor(None, session.close)


@dataclass(eq=False)
class CallState:
    tenant_id: str
    call_id: str
    # A restarted voice joins the stream where it is: the first chunk seen starts it.
    audio: InOrder[VoiceAudio] = field(default_factory=lambda: InOrder(next_seq=None))
    queue: asyncio.Queue[VoiceAudio] = field(default_factory=asyncio.Queue)
    worker: asyncio.Task[None] | None = None
    keys_seq: int = 0
    listening: Listening | None = None
    speech_capture: str | None = None  # the capture telephony says the customer speaks
    captures: dict[str, domain.CaptureView] = field(default_factory=dict)
    closed: set[str] = field(default_factory=set)  # captures over: their audio is dropped
    prompts: int = 0
    # Call transcription outside captures: whether voice asked for this call's free audio
    # (None: not looked up yet), and the digits its last utterances ended with (a number
    # said over several utterances is redacted as one).
    transcribed: bool | None = None
    carried: int = 0
    over: bool = False  # the call ended; its transcription is hearing its last words
    last_words: asyncio.Event = field(default_factory=asyncio.Event)
    winding_down: asyncio.Task[None] | None = None


def _stop_listening(state: CallState) -> None:
    _let_go(state.listening)
    state.listening = None


class Voice:
    def __init__(self, kernel: Kernel, recognizers: Recognizers, *, readback: bool) -> None:
        self.kernel = kernel
        self.recognizers = recognizers
        self.readback = readback
        self.shelf = ClipShelf(kernel.cache)
        # Our numbering of `voice.keys` per call starts at 1 in this process: telephony
        # tells a restarted voice's messages from the old one's by this id.
        self.epoch = secrets.token_hex(8)
        self.calls: dict[tuple[str, str], CallState] = {}
        self._ended: OrderedDict[tuple[str, str], None] = OrderedDict()
        self.transcription = CallTranscription(kernel, available=recognizers.available)

    # --- audio in --------------------------------------------------------------------------

    async def audio(self, message: VoiceAudio) -> None:
        """A chunk from telephony: queued in order for the call's worker, at once (the
        recognizer runs in the worker, never in the bus consumer)."""
        key = (message.tenant_id, message.call_id)
        if key in self._ended or (message.mode == "free") != (message.capture_id is None):
            return  # free audio belongs to no capture, a capture's audio to its capture
        state = self.calls.get(key)
        if state is None:
            state = self.calls[key] = CallState(message.tenant_id, message.call_id)
        for chunk in state.audio.push(message.seq, message):
            state.queue.put_nowait(chunk)
        if state.worker is None:
            state.worker = asyncio.create_task(self._work(state), name=f"voice:{message.call_id}")

    async def _work(self, state: CallState) -> None:
        while True:
            chunk = await state.queue.get()
            try:
                await self._hear(state, chunk)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # one bad chunk must not deafen the call
                # The type only: a recognizer's message may quote what it heard.
                log.warning("voice.chunk_failed", call_id=state.call_id, error=type(exc).__name__)

    async def _hear(self, state: CallState, chunk: VoiceAudio) -> None:
        try:
            await self._hear_chunk(state, chunk)
        finally:
            if chunk.ending:
                state.last_words.set()

    async def _hear_chunk(self, state: CallState, chunk: VoiceAudio) -> None:
        if chunk.capture_id in state.closed or (state.over and chunk.capture_id is not None):
            return  # a capture over (the call's end cancels any): its audio goes unheard
        if chunk.capture_id is None and not await self._transcribed(state):
            return  # free audio voice never asked for: dropped unheard
        opened = self._open(state, chunk)
        if opened is None:
            return
        keys, audio = opened
        listening = state.listening
        if listening is None or listening.capture_id != chunk.capture_id:
            _let_go(listening)
            listening = state.listening = Listening(chunk.capture_id, chunk.mode)
        if chunk.capture_id is not None:
            # Keys outside a capture are nobody's card data and never transcribed (telephony
            # drops them before they reach a free chunk; any that did are ignored here).
            for key in keys:
                await self._key(state, listening, key)
        engine = await self.recognizers.for_tenant(state.tenant_id)
        if engine is None:
            return  # no recognizer for this tenant: the audio is dropped unheard
        heard = await self._feed(state, engine, listening, ulaw_decode(audio), finish=chunk.last)
        for transcript in heard:
            if state.listening is not listening or self._gone(state):
                return  # the capture or call ended while the recognizer worked
            if transcript.final and listening.capture_id is None:
                await self._said_freely(state, transcript)
            elif transcript.final:
                await self._utterance(state, listening, transcript)

    def _open(self, state: CallState, chunk: VoiceAudio) -> tuple[str, bytes] | None:
        try:
            plain = self.kernel.vault.unseal(
                state.tenant_id,
                base64.b64decode(chunk.sealed),
                voice_audio_context(state.call_id, chunk.seq),
            )
            return unpack_chunk(plain)
        except (VaultError, ValueError, binascii.Error):
            log.warning("voice.chunk_refused", call_id=state.call_id, seq=chunk.seq)
            return None

    async def _feed(
        self,
        state: CallState,
        engine: Transcriber,
        listening: Listening,
        pcm: np.ndarray,
        *,
        finish: bool,
    ) -> list[Transcript]:
        wanted: TranscriptionMode = "free" if listening.confirming else listening.mode
        if listening.session is None or listening.session_mode != wanted:
            _let_go(listening)  # the read-back's answer is heard on a stream of its own
            try:
                listening.session = await asyncio.to_thread(engine.open, mode=wanted)
            except RecognizerUnavailable as exc:
                # No stream opens (a dropped one is simply opened again, unannounced); the
                # audio goes unheard, and the next chunk tries again.
                await self._recognizer_down(state, listening, exc)
                return []
            listening.session_mode = wanted
            listening.told_down = False
        session = listening.session
        try:
            heard = await asyncio.to_thread(session.feed, pcm) if len(pcm) else []
            if finish:
                heard += await asyncio.to_thread(session.finish)
                listening.session = None
        except Exception:
            _let_go(listening)  # a broken stream: the next chunk opens a new one
            raise
        return heard

    async def _recognizer_down(
        self, state: CallState, listening: Listening, exc: RecognizerUnavailable
    ) -> None:
        """Log once, and tell the agent once, until a stream opens again, that nothing is
        being heard, so a capture is switched to the keypad rather than waited on (a
        call's audio comes every 200 ms: not a line each)."""
        if listening.told_down:
            return
        listening.told_down = True
        # The adapter's message names a status or close code only, never what was said.
        log.warning("voice.recognizer_unavailable", call_id=state.call_id, reason=str(exc))
        if listening.capture_id is None:
            return
        view = state.captures.get(listening.capture_id)
        await self._transcript(
            state, listening.capture_id, view.current if view else None, RECOGNIZER_DOWN
        )

    def _gone(self, state: CallState) -> bool:
        return self.calls.get((state.tenant_id, state.call_id)) is not state

    async def _transcribed(self, state: CallState) -> bool:
        """Whether voice asked for this call's free audio (looked up once a call: the
        command went out after the call's row was committed)."""
        if state.transcribed is None:
            state.transcribed = await self.transcription.transcribed(state.tenant_id, state.call_id)
        return state.transcribed

    # --- what was said -----------------------------------------------------------------------

    async def _said_freely(self, state: CallState, transcript: Transcript) -> None:
        """An utterance of the call's transcription: redacted before it is stored or
        published (`CallTranscription.heard`); the clear text goes no further."""
        _, state.carried = await self.transcription.heard(
            state.tenant_id, state.call_id, transcript.text, state.carried
        )

    async def _utterance(
        self, state: CallState, listening: Listening, transcript: Transcript
    ) -> None:
        assert listening.capture_id is not None
        text = transcript.text
        if listening.confirming:
            answer = domain.answer_of(text)
            if answer is None and any(key.isdigit() for key in domain.keys_from_speech(text)):
                # The customer went on to the next field: they did not object.
                listening.confirming = False
            elif answer is None:
                await self._unclear(state, listening)
                return
            else:
                await self._answered(state, listening, answer)
                rest = domain.after_answer(text) if answer == "yes" else ""
                if rest:
                    await self._give_keys(state, listening, rest, "speech")
                return
        view = state.captures.get(listening.capture_id)
        field = view.current if view is not None else None
        keys = domain.keys_from_speech(text, transcript.alternatives, field)
        await self._give_keys(state, listening, keys, "speech")

    async def _key(self, state: CallState, listening: Listening, key: str) -> None:
        """A key the customer pressed while speaking: the read-back's answer, or a key."""
        answer = domain.key_answer(key) if listening.confirming else None
        if answer is not None:
            await self._answered(state, listening, answer)
        else:
            await self._give_keys(state, listening, key, "dtmf")

    async def _give_keys(
        self, state: CallState, listening: Listening, keys: str, source: str
    ) -> None:
        capture_id = listening.capture_id
        assert capture_id is not None
        view = state.captures.get(capture_id)
        current = view.current if view else None
        said = domain.capture_transcript(current, keys) if source == "speech" else "[key pressed]"
        await self._transcript(state, capture_id, current, said)
        if not keys:
            return
        state.keys_seq += 1
        sealed = self.kernel.vault.seal(
            state.tenant_id, keys.encode(), keypad_context(state.call_id)
        )
        await self.kernel.bus.publish(
            VoiceKeys(
                tenant_id=state.tenant_id,
                call_id=state.call_id,
                capture_id=capture_id,
                epoch=self.epoch,
                seq=state.keys_seq,
                sealed=base64.b64encode(sealed).decode(),
                source="dtmf" if source == "dtmf" else "speech",
                correlation_id=capture_id,
            )
        )

    async def _transcript(
        self, state: CallState, capture_id: str | None, field_name: str | None, text: str
    ) -> None:
        await self.kernel.bus.publish(
            VoiceTranscript(
                tenant_id=state.tenant_id,
                call_id=state.call_id,
                capture_id=capture_id,
                field=field_name,
                text=text,
                final=True,
                correlation_id=capture_id,
            )
        )

    # --- the read-back -------------------------------------------------------------------------

    async def _read_back(self, state: CallState, listening: Listening, last4: str) -> None:
        listening.confirming = True
        listening.asked += 1
        await self._play(state, domain.readback_phrases(last4))

    async def _answered(
        self, state: CallState, listening: Listening, answer: domain.Answer
    ) -> None:
        listening.confirming = False
        assert listening.capture_id is not None
        await self._transcript(state, listening.capture_id, "pan", f"[card number: {answer}]")
        if answer == "no":
            await self.kernel.bus.publish(
                CaptureRecaptureRequested(
                    tenant_id=state.tenant_id,
                    capture_id=listening.capture_id,
                    field="pan",
                    correlation_id=listening.capture_id,
                )
            )
            await self._play(state, ["speech_again"])

    async def _unclear(self, state: CallState, listening: Listening) -> None:
        if listening.asked >= domain.MAX_CONFIRM_PROMPTS:
            # Not understood twice: go on; the agent sees the card's last four and may
            # ask for it again.
            listening.confirming = False
            await self._transcript(
                state, listening.capture_id, "pan", "[card number: not confirmed]"
            )
            return
        listening.asked += 1
        await self._play(state, ["speech_confirm"])

    async def _play(self, state: CallState, phrases: list[str]) -> None:
        clips: list[bytes] = []
        for phrase in phrases:
            if phrase == domain.PAUSE:
                clips.append(silence(PAUSE_MS))
                continue
            audio = standard(LANGUAGE, phrase)
            if audio is None:
                log.warning("voice.phrase_missing", phrase=phrase)
                continue
            if clips:
                clips.append(silence(WORD_GAP_MS))
            clips.append(audio)
        if not clips:
            return
        state.prompts += 1
        await self.kernel.bus.publish(
            CallPlay(
                tenant_id=state.tenant_id,
                call_id=state.call_id,
                clips=await self.shelf.names(clips),
                mark=f"voice-{state.prompts}",
                barge_in=True,
            )
        )

    # --- facts from capture and telephony -----------------------------------------------------

    def _state(self, tenant_id: str, call_id: str) -> CallState | None:
        key = (tenant_id, call_id)
        if key in self._ended:
            return None
        state = self.calls.get(key)
        if state is None:
            state = self.calls[key] = CallState(tenant_id, call_id)
        return state

    def capture_started(
        self, tenant_id: str, call_id: str, capture_id: str, fields: list[str]
    ) -> None:
        state = self._state(tenant_id, call_id)
        if state is not None and capture_id not in state.captures:
            state.captures[capture_id] = domain.CaptureView(fields=tuple(fields))

    def secure_mode(
        self, tenant_id: str, call_id: str, on: bool, capture_id: str | None, *, speech: bool
    ) -> None:
        state = self._state(tenant_id, call_id)
        if state is not None:
            state.speech_capture = capture_id if on and speech else None

    async def progress(
        self,
        tenant_id: str,
        call_id: str,
        capture_id: str,
        name: str,
        event: str,
        complete: bool,
        valid: bool | None,
        last4: str | None,
        reason: str | None = None,
    ) -> None:
        state = self._state(tenant_id, call_id)
        if state is None or capture_id in state.closed:
            return
        view = state.captures.setdefault(capture_id, domain.CaptureView())
        view.progress(name, event, complete, valid)
        listening = state.listening
        if (
            state.speech_capture != capture_id
            or listening is None
            or listening.capture_id != capture_id
        ):
            return  # the customer is not speaking this capture: telephony's tones suffice
        if self.readback and last4 and view.pan_confirmable(name, event, valid, last4):
            await self._read_back(state, listening, last4)
        elif event == "rejected":
            # Heard wrong, most likely: the customer is told in words to say it again,
            # and after a second refusal that the keypad works too.
            phrases = domain.refusal_phrases(name, reason, view.refusals.get(name, 0))
            if "speech_keypad" in phrases:
                label = f"[{domain.field_label(name)}: keypad offered]"
                await self._transcript(state, capture_id, name, label)
            if phrases:
                await self._play(state, phrases)

    def capture_ended(self, tenant_id: str, call_id: str, capture_id: str, *, final: bool) -> None:
        """A capture completed (`final` False: a field may still be asked again) or was
        cancelled: what its recognizer holds is dropped now."""
        state = self.calls.get((tenant_id, call_id))
        if state is None:
            return
        if state.listening is not None and state.listening.capture_id == capture_id:
            _stop_listening(state)  # the session and what it buffered go with it
        if final:
            state.closed.add(capture_id)
            state.captures.pop(capture_id, None)

    def call_ended(self, tenant_id: str, call_id: str) -> None:
        """Everything of the call goes: queued chunks, the recognizer and its buffer. A
        transcribed call first hears its last words (the chunk telephony sends as the call
        ends), for at most LAST_WORDS_WAIT_S; a capture's audio goes at once either way."""
        state = self.calls.get((tenant_id, call_id))
        if state is not None and state.transcribed and not state.last_words.is_set():
            if not state.over:
                state.over = True
                if state.listening is not None and state.listening.capture_id is not None:
                    _stop_listening(state)
                state.winding_down = asyncio.create_task(self._after_last_words(state))
            return
        self._forget_call(tenant_id, call_id)

    async def _after_last_words(self, state: CallState) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LAST_WORDS_WAIT_S):
                await state.last_words.wait()
        if self.calls.get((state.tenant_id, state.call_id)) is state:
            self._forget_call(state.tenant_id, state.call_id)

    def _forget_call(self, tenant_id: str, call_id: str) -> None:
        key = (tenant_id, call_id)
        self._ended[key] = None
        while len(self._ended) > ENDED_CALLS_KEPT:
            self._ended.popitem(last=False)
        state = self.calls.pop(key, None)
        if state is None:
            return
        for task in (state.worker, state.winding_down):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        _stop_listening(state)
        while not state.queue.empty():
            state.queue.get_nowait()
        state.audio.held.clear()

    async def close(self) -> None:
        for key in list(self.calls):
            self._forget_call(*key)

    def listening_to(self, tenant_id: str, call_id: str) -> bool:
        """Whether anything of the call is held here (for tests and metrics)."""
        return (tenant_id, call_id) in self.calls
