"""Speech in the Agent UI, in a real browser: the agent starts a capture the customer
speaks, sees the call's audio is masked, switches to the keypad in the middle of it, and
the card keyed from there is approved. (The recognizer is scripted: what it hears is not
the point here; tests/e2e/test_speech_payment.py covers a card that is spoken.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from tests.browser import agent_desk
from tests.browser.agent_desk import PAN, Shots, card_keys, new_page, running, sign_in
from tests.voice_fakes import ScriptedTranscriber
from transact import voice


async def test_an_agent_starts_a_spoken_capture_and_switches_to_the_keypad(
    browser: Browser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(voice.ENGINES, "scripted", ScriptedTranscriber)
    monkeypatch.setattr(agent_desk, "SERVICES", [*agent_desk.SERVICES, "voice"])
    shots = Shots(tmp_path)
    async with running(tmp_path, mfa=False, voice_engine="scripted") as centre:
        settings = await centre.client.put(
            "/api/v1/agent-ui/settings",
            json={
                "methods": ["keypad", "speech"],
                "default_method": "speech",
                "currencies": ["GBP"],
                "default_currency": "GBP",
            },
            headers=centre.admin,
        )
        assert settings.status_code == 200, settings.text
        await centre.user("alice")
        page, witness = await new_page(browser)
        await sign_in(page, centre.base, "alice")
        customer = await centre.call("CA-speech-ui", agent="alice")
        await expect(page.locator("#call-reference")).to_have_text(centre.reference("CA-speech-ui"))

        # Speech is the tenant's default: the start menu offers it, chosen.
        await expect(page.locator("#method-speech")).to_be_checked()
        await page.locator("#pay-amount").fill("42.00")
        await page.locator("#pay-reference").fill("INV-SPOKEN")
        await page.locator("#start-submit").click()
        await expect(page.locator("#capture")).to_be_visible()
        await centre.secure("CA-speech-ui")
        await expect(page.locator("#secure-mode")).to_have_text(
            "Secure mode: the customer's voice is masked"
        )
        await expect(page.locator("#capture-input")).to_have_text("Switch to keypad")
        await shots.take(page, "speech-capture")

        # The customer would rather key it: the agent switches, the call follows.
        await page.locator("#capture-input").click()
        await expect(page.locator("#capture-input")).to_have_text("Switch to speech")
        await expect(page.locator("#capture-message")).to_contain_text("key the rest")
        await centre.secure("CA-speech-ui", times=2)
        await expect(page.locator("#secure-mode")).to_have_text("Secure mode: keys are masked")
        pan, expiry, cvv = card_keys()
        await centre.key(customer, pan + expiry + cvv, 2)
        await expect(page.locator("#capture-submit")).to_be_enabled()
        await page.locator("#capture-submit").click()
        await expect(page.locator("#outcome-title")).to_have_text("Approved", timeout=10000)
        await shots.take(page, "approved-after-switch")
        await witness.never_shown(page, PAN)
