"""The call's transcript in the Agent UI, in a real browser: a call of a tenant that does
not transcribe shows no panel; once an admin turns transcription on, the next call's
panel fills in live with what the customer says, the card number they read out only as
its label, each utterance once and in order, also after the page is reloaded. (The
recognizer is scripted: what it hears is not the point here.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from tests.browser import agent_desk
from tests.browser.agent_desk import PAN, Shots, new_page, running, sign_in
from tests.integration.telephony.test_secure_mode import play
from tests.voice_fakes import ScriptedTranscriber, spoken
from transact import voice
from transact.contracts import Message

WORDS = "zero one two three four five six seven eight nine".split()
SPOKEN_PAN = " ".join(WORDS[int(d)] for d in PAN)
GREETING = "Hello, I'd like to pay my bill."


async def test_the_agent_reads_the_live_transcript_with_the_card_number_labelled(
    browser: Browser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recognizer = ScriptedTranscriber()
    monkeypatch.setitem(voice.ENGINES, "scripted", lambda: recognizer)
    monkeypatch.setattr(agent_desk, "SERVICES", [*agent_desk.SERVICES, "voice"])
    shots = Shots(tmp_path)
    async with running(tmp_path, mfa=False, voice_engine="scripted") as centre:

        async def record(message: Message) -> None:
            centre.line.published.append(message)

        # Telephony streams a call's audio to voice only once voice has asked for it.
        centre.line.kernel.bus.subscribe("voice.transcribe", "test-transcribe", record)
        await centre.user("alice")
        page, witness = await new_page(browser)
        await sign_in(page, centre.base, "alice")

        # Not transcribed (the tenant's setting is off): the page asks, hears 404, and
        # shows no panel and no error.
        async with page.expect_response(
            lambda r: r.url.endswith("/api/v1/calls/CA-untold/transcript") and r.status == 404
        ):
            await centre.call("CA-untold", agent="alice")
        await expect(page.locator("#call-reference")).to_have_text(centre.reference("CA-untold"))
        await expect(page.locator("#transcript")).to_be_hidden()
        await expect(page.locator("#desk-error")).to_be_hidden()

        on = await centre.client.put(
            "/api/v1/voice/settings", json={"transcribe_calls": True}, headers=centre.admin
        )
        assert on.status_code == 200, on.text
        recognizer.say(GREETING, f"My card is {SPOKEN_PAN}.", "Thank you, bye.")
        customer = await centre.call("CA-told", agent="alice")
        await expect(page.locator("#call-reference")).to_have_text(centre.reference("CA-told"))
        await centre.line.wait_for("voice.transcribe")
        seq = await play(customer, spoken(2))

        lines = page.locator("#transcript-lines li")
        await expect(page.locator("#transcript")).to_be_visible()
        await expect(page.locator("#transcript")).to_have_attribute(
            "aria-labelledby", "transcript-title"
        )
        await expect(page.locator("#transcript-lines")).to_have_attribute("aria-live", "polite")
        await expect(lines.locator(".said")).to_have_text(
            [GREETING, "My card is [card number: 16 digits]."], timeout=10000
        )
        await expect(page.locator("#transcript-empty")).to_be_hidden()
        await shots.take(page, "transcript")

        # Reloaded: the stored transcript comes back once; what is said next is added
        # below it, once, whatever the push channel replays on reconnecting.
        await page.reload()
        await expect(page.locator("#call-reference")).to_have_text(centre.reference("CA-told"))
        await expect(lines.locator(".said")).to_have_text(
            [GREETING, "My card is [card number: 16 digits]."]
        )
        await expect(page.locator("#live")).to_have_text("Live")
        await play(customer, spoken(1, seed=8), seq)
        await expect(lines.locator(".said")).to_have_text(
            [GREETING, "My card is [card number: 16 digits].", "Thank you, bye."], timeout=10000
        )
        assert await lines.evaluate_all("items => items.map(li => Number(li.dataset.seq))") == [
            1,
            2,
            3,
        ]
        await shots.take(page, "transcript-after-reload")
        await witness.never_shown(page, PAN, SPOKEN_PAN)
        assert witness.problems == []
