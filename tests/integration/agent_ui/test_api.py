"""The Agent UI's API and page through the gateway, on SQLite and PostgreSQL: tenant UI
settings (read by every user, set by admins, audited, one tenant's never another's), the
page's per-tenant framing policy, the redirect from `/` and the shipped files."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from tests.integration.capture.conftest import PASSWORD, Desk, running
from transact.agent_ui import domain
from transact.auth import Accounts, SigningKeys
from transact.gateway.domain import AGENT_UI_CSP, DEFAULT_CSP

SETTINGS = {
    "methods": ["keypad", "link_sms"],
    "default_method": "link_sms",
    "currencies": ["EUR", "GBP"],
    "default_currency": "EUR",
    "frame_origins": ["https://crm.example.com"],
}


def probe() -> APIRouter:
    """Pages that set their own policy: kept under /ui, replaced anywhere else."""
    router = APIRouter()

    @router.get("/ui/probe")
    @router.get("/probe")
    async def own_policy() -> HTMLResponse:
        return HTMLResponse("<p>x</p>", headers={"Content-Security-Policy": "default-src *"})

    return router


@pytest.fixture(params=["sqlite", "postgres"])
async def desk(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Desk]:
    async with running(request, tmp_path, Desk, ["gateway", "auth", "agent-ui"], ()) as d:
        d.app.include_router(probe())
        # Auth publishes tenants' names for the page's `?tenant=` (it does on start and
        # every minute; a tenant made a moment ago is published here by hand).
        await Accounts(d.kernel, SigningKeys(d.kernel)).publish_directory()
        yield d


async def test_every_user_reads_the_settings_and_only_admins_change_them(desk: Desk) -> None:
    agent = await desk.agent("alice")
    admin = await desk.agent("root", "admin")
    defaults = await desk.client.get("/api/v1/agent-ui/settings", headers=agent)
    assert defaults.status_code == 200
    assert defaults.json() == {**domain.UiSettings().to_dict(), "exponents": {"GBP": 2}}

    refused = await desk.client.put("/api/v1/agent-ui/settings", json=SETTINGS, headers=agent)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"

    saved = await desk.client.put("/api/v1/agent-ui/settings", json=SETTINGS, headers=admin)
    assert saved.status_code == 200, saved.text
    read = await desk.client.get("/api/v1/agent-ui/settings", headers=agent)
    assert read.json() == {**SETTINGS, "exponents": {"EUR": 2, "GBP": 2}}
    trail = await desk.client.get("/api/v1/audit", headers=admin)
    changes = [r for r in trail.json() if r["action"] == "agent_ui.settings_changed"]
    assert len(changes) == 1
    assert changes[0]["details"]["frame_origins"] == ["https://crm.example.com"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({**SETTINGS, "methods": ["telepathy"]}, "invalid_settings"),
        ({**SETTINGS, "frame_origins": ["https://crm.example.com/path"]}, "invalid_settings"),
        ({**SETTINGS, "default_currency": "XXX"}, "invalid_settings"),
        ({**SETTINGS, "colour": "blue"}, "invalid_request"),
        ({**SETTINGS, "methods": "keypad"}, "invalid_request"),
        ({**SETTINGS, "frame_origins": ["https://x.example"] * 11}, "invalid_request"),
    ],
)
async def test_bad_settings_are_refused_and_change_nothing(
    desk: Desk, body: dict[str, object], code: str
) -> None:
    admin = await desk.agent("root", "admin")
    answer = await desk.client.put("/api/v1/agent-ui/settings", json=body, headers=admin)
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == code
    read = await desk.client.get("/api/v1/agent-ui/settings", headers=admin)
    assert read.json()["frame_origins"] == []


async def test_a_tenants_settings_are_its_own(desk: Desk) -> None:
    admin = await desk.agent("root", "admin")
    await desk.client.put("/api/v1/agent-ui/settings", json=SETTINGS, headers=admin)
    accounts = Accounts(desk.kernel, SigningKeys(desk.kernel))
    other = await accounts.create_tenant("other", mfa_required=False)
    await accounts.create_user(other.id, "olga", "admin", PASSWORD)
    login = await desk.client.post(
        "/api/v1/auth/login", json={"tenant": "other", "username": "olga", "password": PASSWORD}
    )
    desk.client.cookies.clear()
    olga = {"Authorization": f"Bearer {login.json()['access_token']}"}
    theirs = await desk.client.get("/api/v1/agent-ui/settings", headers=olga)
    assert theirs.json()["frame_origins"] == []


async def test_the_page_frames_only_for_its_tenants_origins(desk: Desk) -> None:
    admin = await desk.agent("root", "admin")
    await desk.client.put("/api/v1/agent-ui/settings", json=SETTINGS, headers=admin)

    anonymous = await desk.client.get("/ui/")
    assert anonymous.status_code == 200
    assert anonymous.headers["content-security-policy"] == AGENT_UI_CSP
    assert anonymous.headers["cache-control"] == "no-store"

    launched = await desk.client.get("/ui/?tenant=shop&username=alice&launch=x")
    framed = launched.headers["content-security-policy"]
    assert framed == domain.page_csp(["https://crm.example.com"])
    # Browsers that know CSP frame-ancestors ignore it; older ones keep refusing to frame.
    assert launched.headers["x-frame-options"] == "DENY"

    unknown = await desk.client.get("/ui/?tenant=nobody")
    assert unknown.headers["content-security-policy"] == AGENT_UI_CSP

    # Signed in (the session cookie, no query): the session's tenant decides.
    await desk.client.post(
        "/api/v1/auth/login", json={"tenant": "shop", "username": "root", "password": PASSWORD}
    )
    assert desk.client.cookies.get("transact_session")
    signed_in = await desk.client.get("/ui/")
    assert signed_in.headers["content-security-policy"] == framed
    desk.client.cookies.clear()


async def test_the_gateway_keeps_a_page_policy_only_under_ui(desk: Desk) -> None:
    kept = await desk.client.get("/ui/probe")
    assert kept.headers["content-security-policy"] == "default-src *"
    assert kept.headers.get_list("content-security-policy") == ["default-src *"]
    replaced = await desk.client.get("/probe")
    assert replaced.headers["content-security-policy"] == DEFAULT_CSP


async def test_the_root_sends_the_browser_to_the_page_with_its_query(desk: Desk) -> None:
    root = await desk.client.get("/?tenant=shop&username=alice&launch=abc")
    assert root.status_code == 303
    assert root.headers["location"] == "/ui/?tenant=shop&username=alice&launch=abc"
    assert (await desk.client.get("/")).headers["location"] == "/ui/"
    assert (await desk.client.get("/ui")).headers["location"] == "/ui/"


async def test_only_the_shipped_files_are_served(desk: Desk) -> None:
    page = await desk.client.get("/ui/")
    assert "/ui/static/app.js?v=" in page.text
    script = await desk.client.get("/ui/static/app.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    style = await desk.client.get("/ui/static/app.css")
    assert style.headers["content-type"].startswith("text/css")
    for missing in ("/ui/static/nope.js", "/ui/static/..%2Fpages.py", "/ui/static/"):
        answer = await desk.client.get(missing)
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "not_found"
    # No third party anywhere: every script and stylesheet the page names is ours.
    assert not re.search(r'(src|href)="(https?:)?//', page.text)
