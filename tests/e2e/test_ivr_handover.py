"""An agent hands a live call to the payment line and gets it back: the caller hears the
prompts and keys the card in-band, the sandbox PSP approves, the call returns to the
agent with the outcome. What the agent's leg heard meanwhile is checked by ear: an
independent DTMF decoder (multimon-ng) finds no key in it, and none of the prompts (the
read-back of the last four and the amount included) is in it, even though the caller's
phone echoed every prompt back into the call."""

from __future__ import annotations

import asyncio

import numpy as np

from tests.integration.capture.test_capture import CVV, future_expiry
from tests.integration.ivr.conftest import Caller, spoken
from tests.integration.ivr.handover import BILL, Desk, Ear, desk_fixture  # noqa: F401  (a fixture)
from tests.integration.telephony.test_media_streams import speechlike
from tests.leaks import card_numbers_in, database_dump
from tests.unit.telephony.test_masking import multimon_keys
from transact.ivr.phrases import PAUSE
from transact.ivr.speech import digits
from transact.kernel.audio import FRAME_SAMPLES, ulaw_decode, ulaw_encode
from transact.telephony.dtmf import detect_keys
from transact.telephony.masking import DELAY_SAMPLES
from transact.telephony.simulate import customer_audio
from transact.telephony.tones import HOLD_FREQ, hold

PAN = "4242424242424242"
CALL = "CA-handover"
AMOUNT = ("forty", "two", "pounds")
ECHO_LEVEL = 0.5  # the caller's phone sends back half of what it plays


def frames_in(audio: np.ndarray) -> int:
    return -(-len(audio) // FRAME_SAMPLES)


def similarity(signal: np.ndarray, clip: np.ndarray) -> float:
    """The best normalized cross-correlation of `clip` anywhere in `signal` (1.0: the clip
    is there, at any level; near 0: nothing like it)."""
    x, c = signal.astype(np.float64), clip.astype(np.float64)
    if len(x) < len(c):
        x = np.pad(x, (0, len(c) - len(x)))
    size = 1 << int(np.ceil(np.log2(len(x) + len(c))))
    dots = np.fft.irfft(np.fft.rfft(x, size) * np.conj(np.fft.rfft(c, size)), size)
    dots = dots[: len(x) - len(c) + 1]
    energy = np.concatenate([[0.0], np.cumsum(x * x)])
    windows = energy[len(c) :] - energy[: len(x) - len(c) + 1]
    norm = np.sqrt(np.maximum(windows, 1e-9) * float(np.dot(c, c)))
    return float(np.max(np.abs(dots) / norm))


def share_outside(audio: np.ndarray, low: float, high: float) -> float:
    """The share of the audio's energy outside [low, high] Hz."""
    power = np.abs(np.fft.rfft(audio.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / 8000)
    inside = power[(freqs >= low) & (freqs <= high)].sum()
    return float(1 - inside / max(power.sum(), 1e-9))


class Phone:
    """The caller's side during the handover: hears each prompt, echoes it back into the
    call (as a phone's speaker does into its microphone), and only then lets the
    platform say it was played; keys pressed in-band. Keeps what it sent."""

    def __init__(self, caller: Caller) -> None:
        self.caller = caller
        self.sent: list[np.ndarray] = []
        self.prompts: list[np.ndarray] = []

    async def hear(self, *, echo: bool = True) -> bytes:
        heard = await self.caller.hear(15)
        clip = ulaw_decode(heard.audio)
        self.prompts.append(clip)
        if echo:
            await self.send((clip * ECHO_LEVEL).astype(np.int16))
        await self.caller.echo_mark(heard.mark)
        return heard.audio

    async def press(self, keys: str) -> None:
        await self.send(customer_audio(keys, 60, 300, None))

    async def send(self, audio: np.ndarray) -> None:
        self.sent.append(audio)
        await self.caller.play(audio)

    @property
    def frames(self) -> int:
        return sum(frames_in(a) for a in self.sent)


async def bridged(caller: Caller, ear: Ear) -> None:
    """Wait until what the agent says reaches the caller (the bridge is up)."""
    caller.pending.clear()
    async with asyncio.timeout(10):
        while not caller.pending:
            await ear.say(speechlike(1, seed=9))
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.1)
    caller.pending.clear()


async def test_a_handed_over_call_is_paid_and_the_agent_hears_nothing_of_it(desk: Desk) -> None:
    flow = await desk.flow(**BILL)
    caller, ear = await desk.call(CALL)
    caller.echo = False  # marks are echoed by `Phone`, after the prompt's echo

    # Before: the agent and the customer hear each other.
    before = speechlike(25, seed=1)
    await caller.play(before)
    await ear.until(25)
    assert np.sqrt(np.mean(ear.heard(0, 25).astype(np.float64) ** 2)) > 400
    await bridged(caller, ear)

    answer = await desk.hand_over(
        CALL, {"flow": "bills", "amount": 4200, "currency": "GBP", "reference": "ORDER-42"}
    )
    assert answer.status_code == 201, answer.text
    phone = Phone(caller)

    # The flow has the customer: every prompt is exactly the flow's, nothing of the agent.
    assert await phone.hear() == spoken(flow, "greeting", PAUSE, "amount_due", *AMOUNT)
    await ear.say(speechlike(50, seed=2))  # the agent talks over the line: unheard
    assert await phone.hear() == spoken(flow, "enter_pan")
    await phone.press(PAN)
    assert await phone.hear() == spoken(flow, "enter_expiry")
    await phone.press(future_expiry())
    assert await phone.hear() == spoken(flow, "enter_cvv")
    await phone.press(CVV)
    read_back = spoken(
        flow, "readback_card", *digits("4242"), PAUSE, "readback_amount", *AMOUNT, PAUSE,
        "confirm_menu",
    )  # fmt: skip
    assert await phone.hear() == read_back
    await phone.press("1")
    assert await phone.hear() == spoken(flow, "processing")
    await phone.hear()  # approved, and the confirmation number twice
    assert await phone.hear(echo=False) == spoken(flow, "returning")

    # The outcome, for the agent's screen; the call is back with the agent.
    ended = await desk.ended(CALL)
    assert (ended.outcome, ended.brand, ended.last4) == ("paid", "visa", "4242")
    assert ended.agent_id == answer.json()["agent_id"]
    assert len(ended.confirmation) == 6
    stages = [s.stage for s in desk.steps(CALL)]
    assert stages == ["greeting", "opening", "card", "confirm", "paying", "outcome", "goodbye",
                      "ended"]  # fmt: skip
    assert [m.on for m in desk.line.events("call.handover")] == [True, False]  # type: ignore[attr-defined]
    payment = await desk.client.get(f"/api/v1/payments/{ended.capture_id}", headers=desk.admin)
    assert (payment.json()["status"], payment.json()["channel"]) == ("authorized", "ivr")

    # What the agent heard while the call was away: the hold tone, nothing else.
    during = (25, 25 + phone.frames)
    await ear.until(during[1])
    agent = ear.heard(*during)
    customer = np.concatenate(phone.sent)
    assert PAN in multimon_keys(customer)  # the decoder hears the keys the caller sent...
    assert multimon_keys(agent) == ""  # ...and none in what the agent heard
    assert detect_keys(agent) == ""
    for clip in phone.prompts[:-1]:  # every prompt the phone echoed
        assert similarity(customer, clip) > 0.9  # it is in what the caller sent...
        # ...and not in what the agent heard (a lone 425 Hz tone matches speech at about
        # 0.13 by chance; an echo of the prompt, at any level, would be near 1).
        assert similarity(agent, clip) < 0.2
    assert share_outside(agent, HOLD_FREQ - 75, HOLD_FREQ + 75) < 0.01
    assert np.abs(agent).max() < 2000  # soft
    # Sample for sample, the hold tone from its start: nothing of the call is left over.
    assert np.array_equal(agent, ulaw_decode(ulaw_encode(hold(0, len(agent)))))

    # After: the bridge is back both ways.
    await bridged(caller, ear)  # the customer hears the agent again
    after = speechlike(50, seed=3)
    await caller.play(after)
    await ear.until(during[1] + 50)
    back = ear.heard(during[1], during[1] + 50).astype(np.float64)
    said = after[: len(back) - DELAY_SAMPLES].astype(np.float64)
    heard = back[DELAY_SAMPLES:]
    assert np.dot(said, heard) / np.sqrt(np.dot(said, said) * np.dot(heard, heard)) > 0.9

    published = " ".join(m.model_dump_json() for m in desk.line.published)
    assert PAN not in published
    assert card_numbers_in(published) == []
    assert card_numbers_in(await database_dump(desk.line.kernel.db.engine)) == []


async def test_a_caller_hanging_up_mid_handover_cancels_the_capture(desk: Desk) -> None:
    flow = await desk.flow(**BILL)
    caller, _ = await desk.call("CA-handover-gone")
    answer = await desk.hand_over("CA-handover-gone", {"flow": "bills"})
    assert answer.status_code == 201, answer.text
    await caller.hear()
    assert (await caller.hear()).audio == spoken(flow, "enter_pan")
    await caller.press(PAN)
    await caller.hear()  # the expiry date is asked for
    await caller.hang_up()
    ended = await desk.ended("CA-handover-gone")
    assert ended.outcome == "abandoned"
    cancelled = await desk.line.wait_for("capture.cancelled")
    assert cancelled[0].reason == "call_ended"  # type: ignore[attr-defined]
    payment = await desk.client.get(f"/api/v1/payments/{ended.capture_id}", headers=desk.admin)
    assert payment.json()["status"] == "cancelled"
    assert card_numbers_in(await database_dump(desk.line.kernel.db.engine)) == []


async def test_a_call_whose_agent_left_is_ended_when_the_flow_is_over(desk: Desk) -> None:
    flow = await desk.flow(**BILL, max_attempts=1)
    caller, ear = await desk.call("CA-handover-alone")
    answer = await desk.hand_over("CA-handover-alone", {"flow": "bills"})
    assert answer.status_code == 201, answer.text
    await caller.hear()
    await ear.ws.close()  # the agent leaves while the caller is with the line
    assert (await caller.hear()).audio == spoken(flow, "enter_pan")
    await caller.press("4242424242424241#")  # not a card number: one try only
    assert (await caller.hear()).audio == spoken(flow, "too_many_attempts", PAUSE, "returning")
    await asyncio.wait_for(caller.closed.wait(), 5)  # nobody to return to: ended
    assert (await desk.ended("CA-handover-alone")).outcome == "too_many_attempts"
