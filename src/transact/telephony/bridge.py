"""The media plane: live calls on this instance, their two legs, and what flows between them.

Customer audio reaches the agent only through the leg's DSP (detector + masker); a
DSP failure sends silence instead (fail closed). Keys the customer presses are
published sealed while card capture holds the call in secure mode, and dropped
otherwise. Keys the agent presses on their own phone form one-time link codes.

A self-service call (customParameters.ivr) has no agent leg: its keys outside secure
mode go sealed to the flow driving it (`call.ivr_key`), and it plays the prompts the
flow sends (`call.play`), each followed by a `mark` whose echo says it was heard.

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
    ivr_key_context,
    keypad_context,
)
from transact.kernel.vault import Vault
from transact.telephony import domain, tones
from transact.telephony.audio import FRAME_SAMPLES, SAMPLE_RATE, ulaw_decode, ulaw_encode
from transact.telephony.dtmf import KeyEvent

log = structlog.get_logger("transact.telephony")

Publish = Callable[[Message], Awaitable[object]]
OUTSIDE_NOTICE_GAP_MS = 3000  # keys closer than this are one burst: one notice


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
    agent_code: domain.AgentCode = field(default_factory=domain.AgentCode)
    outside_notice_ms: int = -OUTSIDE_NOTICE_GAP_MS - 1
    feedback: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int16))
    started: bool = False
    ended: bool = False
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
        if call.customer is not None and (call.agent is not None or call.ivr is not None):
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
                self.metrics.legs.labels(leg.kind).dec()
                await _close_quietly(leg.socket, 1000, close_reason)
        if call.customer is not None:
            self.metrics.calls.dec()
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
        heard, keys = self._run_dsp(leg, pcm)
        leg.samples += len(pcm)
        for key in keys:
            # When it was recognised, not when the tone began: the platform's own report
            # of the press comes around the key's release.
            if leg.merger.accept(key.key, "inband", leg.now_ms):
                await self._key(call, leg, key.key, "inband")
        partner = call.agent if leg is call.customer else call.customer
        if partner is not None:
            if partner is call.customer:
                heard = self._mix_feedback(call, heard)
            await _send_quietly(
                partner.socket, domain.media_message(partner.stream_sid, ulaw_encode(heard))
            )
        self.metrics.frames.labels(leg.kind).observe(time.perf_counter() - started)

    def _run_dsp(self, leg: Leg, pcm: np.ndarray) -> tuple[np.ndarray, list[KeyEvent]]:
        try:
            return leg.dsp.process(pcm)
        except Exception as exc:
            # Fail closed: the partner hears silence, never the raw tones. A fresh DSP
            # takes over from the next frame.
            self.metrics.masker_failures.inc()
            log.error("telephony.masker_failed", leg=leg.kind, error=type(exc).__name__)
            leg.dsp = self._dsp_factory()
            return np.zeros(len(pcm), dtype=np.int16), []

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
        if not call.secure and call.ivr is not None:
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
            )
        )

    # --- prompts -------------------------------------------------------------------------------

    async def play(
        self, tenant_id: str, call_id: str, audio: bytes, mark: str, *, barge_in: bool
    ) -> None:
        """Send mu-law audio to the caller, then its mark: the platform plays what it is
        sent in order and echoes the mark once the audio before it has been heard."""
        call = self.find(tenant_id, call_id)
        if call is None or call.customer is None or call.ended:
            return
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

    async def hang_up(self, tenant_id: str, call_id: str) -> None:
        call = self.find(tenant_id, call_id)
        if call is not None:
            await self.end(call, "completed", close_reason="call ended")

    # --- secure mode and feedback ------------------------------------------------------------

    async def secure_mode(self, tenant_id: str, call_id: str, on: bool, capture_id: str) -> None:
        call = self.find(tenant_id, call_id)
        if call is None or call.customer is None:
            return
        if not on and call.capture_id not in (None, capture_id):
            return  # the end of an older capture must not end the current one
        if call.secure == on and call.capture_id == (capture_id if on else None):
            return
        call.secure = on
        call.capture_id = capture_id if on else None
        await self._publish(
            CallSecureMode(tenant_id=tenant_id, call_id=call_id, on=on, capture_id=capture_id)
        )

    async def feedback(self, tenant_id: str, call_id: str, accepted: bool) -> None:
        """A short tone to the customer: field accepted, or rejected (key it again)."""
        call = self.find(tenant_id, call_id)
        if call is None or call.customer is None:
            return
        if call.ivr is not None:
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
