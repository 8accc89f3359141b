"""The media plane: live calls on this instance, their two legs, and what flows between them.

Customer audio reaches the agent only through the leg's DSP (detector + masker); a
DSP failure sends silence instead (fail closed). Keys the customer presses are
published sealed while card capture holds the call in secure mode, and dropped
otherwise. Keys the agent presses on their own phone form one-time link codes.

In secure speech mode (a capture the customer speaks) the agent hears comfort noise in
place of the customer, never their voice; the customer's audio, with the keys they
press, goes to voice in sealed 200 ms chunks (`voice.audio`), and the keys voice hears
come back (`voice.keys`) to be numbered with the call's keypad keys and published as
`call.keypad`: one numbering per call, whoever heard the keys. For a tenant that
transcribes calls (voice says so, `voice.transcribe`) the customer's audio goes to voice
the same way outside secure mode, in `free` mode and without keys; it pauses during
every capture.

A self-service call (customParameters.ivr) has no agent leg: its keys outside secure
mode go sealed to the flow driving it (`call.ivr_key`), and it plays the prompts the
flow sends (`call.play`), each followed by a `mark` whose echo says it was heard.

An agent's call handed over to a flow (`call.handover`) is driven the same way while
the handover lasts, and the bridge is cut both ways: the agent hears a soft hold tone
made here (nothing of the customer, the prompts or the keys), the customer hears the
prompts and never the agent. When the flow gives the call back the bridge resumes; a
call whose agent leg has gone by then ends.

The sockets live in this process, so this state is in memory by nature; what
other services need to know (call.started/ended, keys, secure mode) goes on the bus.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from transact.contracts import Message
from transact.contracts.calls import (
    CallAgentCode,
    CallEnded,
    CallIvrKey,
    CallKeypad,
    CallKeysOutsideCapture,
    CallPromptDone,
    CallSecureMode,
    CallStarted,
    InputMode,
    ivr_key_context,
    keypad_context,
)
from transact.contracts.voice import (
    CHUNK_MS,
    MAX_CHUNK_KEYS,
    VoiceAudio,
    VoiceKeys,
    pack_chunk,
    voice_audio_context,
)
from transact.kernel.errors import VaultError
from transact.kernel.sequence import InOrder
from transact.kernel.vault import Vault
from transact.telephony import domain, tones
from transact.telephony.audio import FRAME_SAMPLES, SAMPLE_RATE, ulaw_decode, ulaw_encode
from transact.telephony.dtmf import KeyEvent
from transact.telephony.masking import PooledDsp

log = structlog.get_logger("transact.telephony")

Publish = Callable[[Message], Awaitable[object]]
OUTSIDE_NOTICE_GAP_MS = 3000  # keys closer than this are one burst: one notice
CHUNK_BYTES = SAMPLE_RATE * CHUNK_MS // 1000  # mu-law: one byte a sample
MAX_RETIRED_EPOCHS = 16
MAX_ENDED_HANDOVERS = 16


class Dsp(Protocol):
    delay_samples: int

    def process(self, frame: np.ndarray) -> tuple[np.ndarray, list[KeyEvent]]: ...


DspFactory = Callable[[], Dsp]


class Socket(Protocol):
    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.calls = Gauge(
            "transact_telephony_calls_active", "calls with a live customer leg", registry=registry
        )
        self.legs = Gauge(
            "transact_telephony_legs_active", "connected media legs", ["leg"], registry=registry
        )
        self.frames = Histogram(
            "transact_telephony_frame_seconds",
            "time to detect, mask and forward one inbound media frame",
            ["leg"],
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05),
            registry=registry,
        )
        self.keys = Counter(
            "transact_telephony_keys",
            "keys detected, by leg, how they were detected and what became of them",
            ["leg", "source", "fate"],
            registry=registry,
        )
        self.masker_failures = Counter(
            "transact_telephony_masker_failures",
            "frames replaced by silence because the DSP failed",
            registry=registry,
        )
        self.refused = Counter(
            "transact_telephony_streams_refused",
            "media streams closed before bridging, by reason",
            ["reason"],
            registry=registry,
        )
        self.masking_delay = Gauge(
            "transact_telephony_masking_delay_seconds",
            "delay the masker's look-ahead adds to customer audio",
            registry=registry,
        )


@dataclass(eq=False)
class Leg:
    kind: domain.LegKind
    socket: Socket
    stream_sid: str
    dsp: Dsp
    reorder: domain.Reorder = field(default_factory=domain.Reorder)
    merger: domain.KeyMerger = field(default_factory=domain.KeyMerger)
    samples: int = 0  # audio received so far: the leg's clock

    @property
    def now_ms(self) -> int:
        return self.samples * 1000 // SAMPLE_RATE


@dataclass(frozen=True, eq=False)
class Prompt:
    """Audio sent to the platform and not yet heard to its end (its mark not echoed)."""

    mark: str
    barge_in: bool


@dataclass(eq=False)
class Call:
    tenant_id: str
    call_id: str
    reference: str = ""
    ivr: str | None = None  # the self-service flow driving the call, if any
    ivr_key_seq: int = 0
    prompts: list[Prompt] = field(default_factory=list)  # in the order they play
    customer: Leg | None = None
    agent: Leg | None = None
    secure: bool = False
    capture_id: str | None = None
    keypad_seq: int = 0
    # Speech capture: keypad or speech while secure; the audio and keys not yet sent to
    # voice (never more than one chunk); the numbering of chunks and of voice's keys.
    input: InputMode = "keypad"
    voice_seq: int = 0
    voice_audio: bytearray = field(default_factory=bytearray)
    voice_keys: str = ""
    # The tenant transcribes calls (voice asked, `voice.transcribe`): the customer's audio
    # goes to voice in free mode, numbered with the speech chunks, whenever not secure.
    transcribe: bool = False
    keys_epoch: str | None = None
    keys_order: InOrder[VoiceKeys] = field(default_factory=InOrder)
    retired_epochs: list[str] = field(default_factory=list)
    noise: np.random.Generator = field(default_factory=np.random.default_rng)
    agent_code: domain.AgentCode = field(default_factory=domain.AgentCode)
    outside_notice_ms: int = -OUTSIDE_NOTICE_GAP_MS - 1
    feedback: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int16))
    started: bool = False
    ended: bool = False
    # The flow session the call is handed over to (None: bridged as usual), the sessions
    # whose handover has ended (a late command of theirs changes nothing), and how much
    # hold tone the agent has heard (where the tone's cadence is).
    handover: str | None = None
    ended_handovers: list[str] = field(default_factory=list)
    hold_samples: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    timer: asyncio.Task[None] | None = None


class Switchboard:
    """Every call with a leg on this instance, keyed by (tenant, call id)."""

    def __init__(
        self,
        vault: Vault,
        publish: Publish,
        dsp_factory: DspFactory,
        metrics: Metrics,
        pair_timeout: float,
    ) -> None:
        self._vault = vault
        self._publish = publish
        self._dsp_factory = dsp_factory
        self.metrics = metrics
        self.pair_timeout = pair_timeout
        self.calls: dict[tuple[str, str], Call] = {}
        # Looked up once: `labels()` per frame costs as much as the rest of the metrics.
        self._frame_seconds = {kind: metrics.frames.labels(kind) for kind in ("customer", "agent")}

    def find(self, tenant_id: str, call_id: str) -> Call | None:
        return self.calls.get((tenant_id, call_id))

    def new_leg(self, kind: domain.LegKind, socket: Socket, stream_sid: str) -> Leg:
        dsp = self._dsp_factory()
        self.metrics.masking_delay.set(dsp.delay_samples / SAMPLE_RATE)
        return Leg(kind, socket, stream_sid, dsp)

    # --- legs come and go ----------------------------------------------------------------

    async def attach_customer(self, tenant_id: str, start: domain.Start, leg: Leg) -> Call:
        call = self.calls.setdefault((tenant_id, start.call_sid), Call(tenant_id, start.call_sid))
        if call.customer is not None or call.ended:
            raise domain.ProtocolError("this call already has a customer leg")
        call.ivr = domain.ivr_flow(start.params.get("ivr"))
        call.customer = leg
        call.reference = domain.clean_reference(start.params.get("reference")) or (
            domain.new_reference()
        )
        self.metrics.calls.inc()
        self.metrics.legs.labels("customer").inc()
        call.started = True
        await self._publish(self._started(call, start.params))
        self._watch_pairing(call)
        return call

    async def attach_agent(self, tenant_id: str, call_id: str, leg: Leg) -> Call:
        call = self.calls.setdefault((tenant_id, call_id), Call(tenant_id, call_id))
        if call.agent is not None:
            raise domain.ProtocolError("this call already has an agent leg")
        if call.ended:
            raise domain.ProtocolError("this call has ended")
        call.agent = leg
        self.metrics.legs.labels("agent").inc()
        self._watch_pairing(call)
        return call

    def _started(self, call: Call, params: dict[str, str]) -> CallStarted:
        numbers = {
            side: domain.e164(params.get(side)) for side in ("from", "to")
        }  # customParameters carry them; Twilio's own `from`/`to` names
        return CallStarted(
            tenant_id=call.tenant_id,
            call_id=call.call_id,
            reference=call.reference,
            from_masked=domain.mask_number(numbers["from"]) if numbers["from"] else None,
            to_masked=domain.mask_number(numbers["to"]) if numbers["to"] else None,
            from_digest=self._digest(call, numbers["from"]),
            to_digest=self._digest(call, numbers["to"]),
            agent_hint=params.get("agent") or None,
            sip_call_id=params.get("sipCallId") or params.get("sip_call_id") or None,
            external_id=params.get("externalId") or params.get("external_id") or None,
            ivr=call.ivr,
        )

    def _digest(self, call: Call, number: str | None) -> str | None:
        return self._vault.digest(call.tenant_id, "phone", number) if number else None

    def _watch_pairing(self, call: Call) -> None:
        """A leg alone waits for its partner; the timer ends the wait either way. A
        self-service call expects no agent: its customer leg never waits."""
        if call.customer is not None and (call.agent is not None or self.flow_driven(call)):
            if call.timer is not None:
                call.timer.cancel()
                call.timer = None
            return
        if call.timer is None:
            call.timer = asyncio.create_task(self._pair_or_time_out(call))

    async def _pair_or_time_out(self, call: Call) -> None:
        await asyncio.sleep(self.pair_timeout)
        call.timer = None
        if call.customer is not None and call.agent is not None:
            return
        self.metrics.refused.labels("unpaired").inc()
        log.info("telephony.unpaired", call_id=call.call_id)
        await self.end(call, "timeout", close_reason="the other leg of this call never came")

    async def detach(self, call: Call, leg: Leg, *, clean: bool) -> None:
        """A socket closed. The customer leaving ends the call; an agent may come back."""
        if leg is call.customer:
            await self.end(call, "hangup" if clean else "error", close_reason="call ended")
        elif leg is call.agent:
            call.agent = None
            _retire(leg.dsp)
            self.metrics.legs.labels("agent").dec()
            if call.customer is None:
                self._forget(call)
            else:
                self._watch_pairing(call)

    async def end(self, call: Call, reason: domain.EndReason, *, close_reason: str) -> None:
        if call.ended:
            return
        call.ended = True
        if call.timer is not None and call.timer is not asyncio.current_task():
            call.timer.cancel()
        self._forget(call)
        for leg in (call.customer, call.agent):
            if leg is not None:
                _retire(leg.dsp)
                self.metrics.legs.labels(leg.kind).dec()
                await _close_quietly(leg.socket, 1000, close_reason)
        if call.customer is not None:
            self.metrics.calls.dec()
        if call.started and self.transcribing(call):
            # What the customer said last, up to the hang-up, is transcribed too.
            await self._send_chunk(call, last=True, ending=True)
        if call.started:
            await self._publish(
                CallEnded(tenant_id=call.tenant_id, call_id=call.call_id, reason=reason)
            )
        call.customer = call.agent = None

    def _forget(self, call: Call) -> None:
        if self.calls.get((call.tenant_id, call.call_id)) is call:
            del self.calls[(call.tenant_id, call.call_id)]

    # --- audio -----------------------------------------------------------------------------

    async def media(self, call: Call, leg: Leg, audio: bytes) -> None:
        started = time.perf_counter()
        pcm = ulaw_decode(audio)
        heard, keys = await self._run_dsp(leg, pcm)
        leg.samples += len(pcm)
        if leg is call.customer and self.speaking(call):
            # The agent hears comfort noise, not the customer; voice hears the customer.
            await self._stream(call, heard)
            heard = tones.comfort_noise(len(heard), call.noise)
        elif leg is call.customer and self.transcribing(call):
            await self._stream(call, heard)  # what the agent hears too: tones masked
        for key in keys:
            # When it was recognised, not when the tone began: the platform's own report
            # of the press comes around the key's release.
            if leg.merger.accept(key.key, "inband", leg.now_ms):
                await self._key(call, leg, key.key, "inband")
        partner = call.agent if leg is call.customer else call.customer
        if partner is not None and call.handover is not None:
            if partner is call.customer:
                partner = None  # the customer hears the flow's prompts, never the agent
            else:
                heard = self._hold(call, len(heard))
        if partner is not None:
            if partner is call.customer:
                heard = self._mix_feedback(call, heard)
            await _send_quietly(
                partner.socket, domain.media_message(partner.stream_sid, ulaw_encode(heard))
            )
        self._frame_seconds[leg.kind].observe(time.perf_counter() - started)

    async def _run_dsp(self, leg: Leg, pcm: np.ndarray) -> tuple[np.ndarray, list[KeyEvent]]:
        dsp = leg.dsp
        try:
            if isinstance(dsp, PooledDsp):
                # Shares one numpy pass with the other legs' frames of this loop turn.
                return await dsp.process_soon(pcm)
            return dsp.process(pcm)
        except Exception as exc:
            # Fail closed: the partner hears silence, never the raw tones. A fresh DSP
            # takes over from the next frame.
            self.metrics.masker_failures.inc()
            log.error("telephony.masker_failed", leg=leg.kind, error=type(exc).__name__)
            if leg.dsp is dsp:
                self._replace_dsp(leg)
            return np.zeros(len(pcm), dtype=np.int16), []

    def _replace_dsp(self, leg: Leg) -> None:
        _retire(leg.dsp)
        leg.dsp = self._dsp_factory()

    async def out_of_band_key(self, call: Call, leg: Leg, digit: str) -> None:
        if leg.merger.accept(digit, "outband", leg.now_ms):
            await self._key(call, leg, digit, "outband")

    async def _key(self, call: Call, leg: Leg, key: str, source: str) -> None:
        if leg is call.customer and call.prompts and call.prompts[0].barge_in:
            await self._barge_in(call)
        if leg is call.agent:
            self.metrics.keys.labels("agent", source, "code").inc()
            code = call.agent_code.press(key, leg.now_ms)
            if code is not None:
                await self._publish(
                    CallAgentCode(tenant_id=call.tenant_id, call_id=call.call_id, code=code)
                )
            return
        if self.speaking(call):
            # Voice decides what a key means while the customer speaks (a digit, or the
            # answer to a read-back), so it travels with the audio, in order.
            self.metrics.keys.labels("customer", source, "speech").inc()
            call.voice_keys += key
            if len(call.voice_keys) >= MAX_CHUNK_KEYS:
                await self._send_chunk(call, last=False)
            return
        if not call.secure and self.flow_driven(call):
            await self._ivr_key(call, key, source)
            return
        if not call.secure:
            # Masked for the agent like every key, and nobody's card data: dropped. The
            # agent is told (once per burst) so they can ask the customer to wait.
            self.metrics.keys.labels("customer", source, "dropped").inc()
            if leg.now_ms - call.outside_notice_ms > OUTSIDE_NOTICE_GAP_MS:
                await self._publish(
                    CallKeysOutsideCapture(tenant_id=call.tenant_id, call_id=call.call_id)
                )
            call.outside_notice_ms = leg.now_ms
            return
        self.metrics.keys.labels("customer", source, "captured").inc()
        call.keypad_seq += 1
        sealed = self._vault.seal(call.tenant_id, key.encode(), keypad_context(call.call_id))
        await self._publish(
            CallKeypad(
                tenant_id=call.tenant_id,
                call_id=call.call_id,
                seq=call.keypad_seq,
                sealed=base64.b64encode(sealed).decode(),
                source="dtmf",
                correlation_id=call.capture_id,
            )
        )

    async def _ivr_key(self, call: Call, key: str, source: str) -> None:
        self.metrics.keys.labels("customer", source, "ivr").inc()
        call.ivr_key_seq += 1
        sealed = self._vault.seal(call.tenant_id, key.encode(), ivr_key_context(call.call_id))
        await self._publish(
            CallIvrKey(
                tenant_id=call.tenant_id,
                call_id=call.call_id,
                seq=call.ivr_key_seq,
                sealed=base64.b64encode(sealed).decode(),
                session_id=call.handover,
            )
        )

    # --- speech capture ------------------------------------------------------------------------

    @staticmethod
    def speaking(call: Call) -> bool:
        return call.secure and call.input == "speech" and call.capture_id is not None

    @staticmethod
    def transcribing(call: Call) -> bool:
        """The tenant's call transcription hears the customer: never while secure (card
        entry is never transcribed, whether keyed or spoken)."""
        return call.transcribe and not call.secure

    async def _stream(self, call: Call, heard: np.ndarray) -> None:
        call.voice_audio += ulaw_encode(heard)
        while len(call.voice_audio) >= CHUNK_BYTES:
            await self._send_chunk(call, last=False)

    async def _send_chunk(self, call: Call, *, last: bool, ending: bool = False) -> None:
        audio = bytes(call.voice_audio[:CHUNK_BYTES])
        del call.voice_audio[:CHUNK_BYTES]
        keys, call.voice_keys = call.voice_keys, ""
        call.voice_seq += 1
        # A speech capture's digits, or the call's transcription outside captures (free:
        # no capture, and no keys: keys outside secure mode are dropped, never sent).
        capture_id = call.capture_id if self.speaking(call) else None
        sealed = self._vault.seal(
            call.tenant_id,
            pack_chunk(keys, audio),
            voice_audio_context(call.call_id, call.voice_seq),
        )
        await self._publish(
            VoiceAudio(
                tenant_id=call.tenant_id,
                call_id=call.call_id,
                seq=call.voice_seq,
                sealed=base64.b64encode(sealed).decode(),
                mode="digits" if capture_id else "free",
                capture_id=capture_id,
                last=last,
                ending=ending,
                correlation_id=capture_id or call.call_id,
            )
        )

    def _drop_speech(self, call: Call) -> None:
        """Audio and keys not yet sent belong to a capture that is over: gone, unsent."""
        call.voice_audio.clear()
        call.voice_keys = ""

    async def transcribe(self, tenant_id: str, call_id: str, on: bool) -> None:
        """Voice asks for the call's audio outside secure mode (its tenant transcribes
        calls), or no more of it. Idempotent: a repeat changes nothing."""
        call = self.find(tenant_id, call_id)
        if call is None or call.customer is None or call.ended or call.transcribe == on:
            return
        if not on and self.transcribing(call):
            await self._send_chunk(call, last=True)  # voice finishes what it heard
        call.transcribe = on

    async def speech_keys(self, message: VoiceKeys) -> None:
        """Keys voice heard: in voice's order, once, numbered with the call's keypad keys."""
        call = self.find(message.tenant_id, message.call_id)
        if call is None or call.customer is None or call.ended:
            return  # another instance holds this call, or it is over
        if message.epoch != call.keys_epoch:
            if message.epoch in call.retired_epochs:
                return  # a late message from a voice process that has been replaced
            if call.keys_epoch is not None:
                call.retired_epochs = [*call.retired_epochs, call.keys_epoch][-MAX_RETIRED_EPOCHS:]
            call.keys_epoch, call.keys_order = message.epoch, InOrder()
        for ready in call.keys_order.push(message.seq, message):
            await self._relay_keys(call, ready)

    async def _relay_keys(self, call: Call, message: VoiceKeys) -> None:
        if not call.secure or call.capture_id != message.capture_id:
            self.metrics.keys.labels("customer", message.source, "dropped").inc()
            return  # the capture they were meant for is over
        try:
            # Only a blob capture can open goes on: one it cannot would stall the call's keys.
            self._vault.unseal(
                call.tenant_id, base64.b64decode(message.sealed), keypad_context(call.call_id)
            )
        except (VaultError, ValueError):
            log.warning("telephony.speech_keys_refused", call_id=call.call_id)
            return
        self.metrics.keys.labels("customer", message.source, "captured").inc()
        call.keypad_seq += 1
        await self._publish(
            CallKeypad(
                tenant_id=call.tenant_id,
                call_id=call.call_id,
                seq=call.keypad_seq,
                sealed=message.sealed,
                source=message.source,
                correlation_id=call.capture_id,
            )
        )

    async def switch_input(
        self, tenant_id: str, call_id: str, capture_id: str, mode: InputMode
    ) -> None:
        """The agent switched the capture between keypad and speech."""
        call = self.find(tenant_id, call_id)
        if call is None or call.customer is None or call.capture_id not in (None, capture_id):
            return
        if call.secure:
            await self.secure_mode(tenant_id, call_id, True, capture_id, mode)
        else:
            call.input = mode  # for when the capture asks for a field again

    # --- prompts -------------------------------------------------------------------------------

    async def play(
        self,
        tenant_id: str,
        call_id: str,
        audio: bytes,
        mark: str,
        *,
        barge_in: bool,
        handover: str | None = None,
    ) -> None:
        """Send mu-law audio to the caller, then its mark: the platform plays what it is
        sent in order and echoes the mark once the audio before it has been heard.

        A prompt of a handover is never played on a bridged call: the handover is
        applied first if its command is still on the way, and a prompt of a handover
        that has ended is dropped."""
        call = self.find(tenant_id, call_id)
        if call is None or call.customer is None or call.ended:
            return
        if handover is not None:
            if handover in call.ended_handovers:
                return
            await self.hand_over(tenant_id, call_id, handover, on=True)
        customer, prompt = call.customer, Prompt(mark, barge_in)
        call.prompts.append(prompt)
        for start in range(0, len(audio), FRAME_SAMPLES):
            if not any(queued is prompt for queued in call.prompts):
                return  # a key stopped it while it was being sent: send no more of it
            chunk = audio[start : start + FRAME_SAMPLES]
            await _send_quietly(customer.socket, domain.media_message(customer.stream_sid, chunk))
        await _send_quietly(customer.socket, domain.mark_message(customer.stream_sid, mark))

    async def skip_prompt(self, tenant_id: str, call_id: str, mark: str) -> None:
        """A prompt that cannot be played ends at once, as if a key had stopped it."""
        call = self.find(tenant_id, call_id)
        if call is not None and call.customer is not None and not call.ended:
            await self._prompt_done(call, mark, interrupted=True)

    async def prompt_marked(self, call: Call, leg: Leg, name: str) -> None:
        """The platform echoed a mark: the prompt before it has been played out."""
        if leg is not call.customer:
            return
        for index, prompt in enumerate(call.prompts):
            if prompt.mark == name:
                # Marks come back in the order they were sent; any older one is heard too.
                del call.prompts[: index + 1]
                await self._prompt_done(call, name, interrupted=False)
                return

    async def _barge_in(self, call: Call) -> None:
        """A key while a barge-in prompt plays: the platform drops what it has not played
        (`clear`), and each prompt still queued ends, interrupted."""
        assert call.customer is not None
        await _send_quietly(call.customer.socket, domain.clear_message(call.customer.stream_sid))
        stopped, call.prompts = call.prompts, []
        for prompt in stopped:
            await self._prompt_done(call, prompt.mark, interrupted=True)

    async def _prompt_done(self, call: Call, mark: str, *, interrupted: bool) -> None:
        await self._publish(
            CallPromptDone(
                tenant_id=call.tenant_id, call_id=call.call_id, mark=mark, interrupted=interrupted
            )
        )

    # --- handover to a flow and back ---------------------------------------------------------

    @staticmethod
    def flow_driven(call: Call) -> bool:
        """A flow has the customer: a self-service call, or one handed over now."""
        return call.ivr is not None or call.handover is not None

    async def hand_over(self, tenant_id: str, call_id: str, session_id: str, *, on: bool) -> None:
        """Cut the bridge for a flow's session (`on`) or restore it. Idempotent: a repeat,
        an `on` after its `off`, or the `off` of another session changes nothing."""
        call = self.find(tenant_id, call_id)
        if call is None or call.customer is None or call.ended:
            return
        if session_id in call.ended_handovers:
            return
        if on:
            if call.handover is None and call.ivr is None:
                call.handover = session_id
                call.ivr_key_seq = 0  # the session numbers its keys from 1
                call.feedback = np.zeros(0, dtype=np.int16)
                self._watch_pairing(call)
                log.info("telephony.handed_over", call_id=call_id)
            return
        call.ended_handovers = [*call.ended_handovers, session_id][-MAX_ENDED_HANDOVERS:]
        if call.handover == session_id:
            call.handover = None
            if call.agent is None:
                await self.end(call, "completed", close_reason="call ended")  # agent gone
                return
            # The masker's look-ahead still holds the last moments of the handover (the
            # read-back, keys): a fresh one starts the agent on the customer's next word.
            self._replace_dsp(call.customer)
            log.info("telephony.handed_back", call_id=call_id)
        elif call.handover is None and call.ivr is not None:
            # A self-service flow that sends the caller on to an agent: the call waits
            # for an agent leg as any agent call does.
            call.ivr = None
            self._watch_pairing(call)

    def _hold(self, call: Call, samples: int) -> np.ndarray:
        tone = tones.hold(call.hold_samples, samples)
        call.hold_samples += samples
        return tone

    async def hang_up(self, tenant_id: str, call_id: str) -> None:
        call = self.find(tenant_id, call_id)
        if call is not None:
            await self.end(call, "completed", close_reason="call ended")

    # --- secure mode and feedback ------------------------------------------------------------

    async def secure_mode(
        self,
        tenant_id: str,
        call_id: str,
        on: bool,
        capture_id: str,
        input: InputMode | None = None,
    ) -> None:
        """`input` None keeps the call's mode (a field asked again after the card was
        complete is given the way the rest of it was)."""
        call = self.find(tenant_id, call_id)
        if call is None or call.customer is None:
            return
        if not on and call.capture_id not in (None, capture_id):
            return  # the end of an older capture must not end the current one
        mode = call.input if input is None else input
        if (
            call.secure == on
            and call.capture_id == (capture_id if on else None)
            and call.input == mode
        ):
            return
        if self.speaking(call):
            if on and capture_id == call.capture_id:
                # Back to the keypad mid-capture: voice finishes what it has heard.
                await self._send_chunk(call, last=True)
            self._drop_speech(call)
        elif on and self.transcribing(call):
            # A capture begins: the call's transcription pauses until it ends, and voice
            # finishes the utterance it was hearing (all of it from before the capture).
            await self._send_chunk(call, last=True)
        call.secure = on
        call.capture_id = capture_id if on else None
        call.input = mode
        await self._publish(
            CallSecureMode(
                tenant_id=tenant_id, call_id=call_id, on=on, capture_id=capture_id, input=mode
            )
        )

    async def feedback(self, tenant_id: str, call_id: str, accepted: bool) -> None:
        """A short tone to the customer: field accepted, or rejected (key it again)."""
        call = self.find(tenant_id, call_id)
        if call is None or call.customer is None:
            return
        if self.flow_driven(call):
            return  # the flow driving the call says it in words
        tone = tones.ACCEPTED if accepted else tones.REJECTED
        if call.agent is None:
            # Nothing to ride on: the platform plays what we send, in order.
            await _send_quietly(
                call.customer.socket,
                domain.media_message(call.customer.stream_sid, ulaw_encode(tone)),
            )
            return
        call.feedback = np.concatenate([call.feedback, tone])

    @staticmethod
    def _mix_feedback(call: Call, heard: np.ndarray) -> np.ndarray:
        """Tones replace the agent's audio while they play, so the customer hears them clearly."""
        if not len(call.feedback):
            return heard
        n = min(len(heard), len(call.feedback))
        out = heard.copy()
        out[:n] = call.feedback[:n]
        call.feedback = call.feedback[n:]
        return out

    async def close_all(self) -> None:
        for call in list(self.calls.values()):
            await self.end(call, "error", close_reason="service shutting down")


def _retire(dsp: Dsp) -> None:
    """A DSP no leg uses any more: a pooled one gives its slot back at once."""
    if isinstance(dsp, PooledDsp):
        dsp.close()


async def _send_quietly(socket: Socket, text: str) -> None:
    try:
        await socket.send_text(text)
    except Exception as exc:  # the partner hung up mid-send: its own handler ends the leg
        log.debug("telephony.send_failed", error=type(exc).__name__)


async def _close_quietly(socket: Socket, code: int, reason: str) -> None:
    try:
        await socket.close(code=code, reason=reason)
    except Exception as exc:
        log.debug("telephony.close_failed", error=type(exc).__name__)
