"""Playwright driving Debian's Chromium (no browser download): skipped only where Chromium
is missing and `CI` is unset; under CI a missing Chromium fails."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, async_playwright, expect

from tests.servers import unavailable

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# Playwright's 5 s default is too short for the last minutes of CI on a shared 2-core
# machine, where speech decoding and page loads queue behind the rest of the suite.
# Waits end as soon as their condition holds, so this slows no passing test.
expect.set_options(timeout=15_000)


@pytest.fixture(scope="session")
def chromium() -> str:
    if not os.path.exists(CHROMIUM):
        unavailable(f"{CHROMIUM} is not installed (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, args=ARGS)
        try:
            yield launched
        finally:
            await launched.close()
