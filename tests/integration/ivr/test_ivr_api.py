"""Flows and prompt recordings (admins), sessions (supervisors) over HTTP."""

from __future__ import annotations

from tests.integration.ivr.conftest import PASSWORD, Line2, spoken
from tests.unit.ivr.test_prompts import tone, wav
from transact.auth import Accounts, SigningKeys
from transact.ivr.phrases import PAUSE
from transact.kernel.audio import ulaw_encode

BILL = {"name": "bills", "amount": 1250, "currency": "GBP", "reference": "INV-1250"}


async def bearer(ivr_line: Line2, username: str, role: str) -> dict[str, str]:
    accounts = Accounts(ivr_line.line.kernel, SigningKeys(ivr_line.line.kernel))
    await accounts.create_user(ivr_line.line.tenant_id, username, role, PASSWORD)
    login = await ivr_line.client.post(
        "/api/v1/auth/login", json={"tenant": "shop", "username": username, "password": PASSWORD}
    )
    ivr_line.client.cookies.clear()
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


async def test_flows_are_created_read_changed_and_deleted(ivr_line: Line2) -> None:
    client, admin = ivr_line.client, ivr_line.admin
    created = await ivr_line.flow(**BILL)
    assert "lookup_secret" not in created  # a fixed flow looks nothing up
    flow_id = created["id"]
    assert (await client.get("/api/v1/ivr/flows", headers=admin)).json()[0]["id"] == flow_id
    changed = await client.put(
        f"/api/v1/ivr/flows/{flow_id}", json={**BILL, "amount": 999}, headers=admin
    )
    assert changed.status_code == 200, changed.text
    assert (await client.get(f"/api/v1/ivr/flows/{flow_id}", headers=admin)).json()["amount"] == 999
    again = await client.post("/api/v1/ivr/flows", json=BILL, headers=admin)
    assert again.status_code == 409
    assert (await client.delete(f"/api/v1/ivr/flows/{flow_id}", headers=admin)).status_code == 204
    assert (await client.get(f"/api/v1/ivr/flows/{flow_id}", headers=admin)).status_code == 404


async def test_bad_flows_are_refused_with_the_reason(ivr_line: Line2) -> None:
    client, admin = ivr_line.client, ivr_line.admin
    for body, words in [
        ({"name": "x"}, "amount and reference"),
        ({**BILL, "fields": ["cvv"]}, "start with pan"),
        ({**BILL, "prompts": {"greeting": "not_uploaded"}}, "upload it first"),
        (
            {"name": "acc", "amount_source": "account", "lookup_url": "https://169.254.169.254/"},
            "link-local",
        ),
    ]:
        refused = await client.post("/api/v1/ivr/flows", json=body, headers=admin)
        assert refused.status_code == 422, refused.text
        assert words in refused.json()["error"]["message"]


async def test_an_account_flows_lookup_secret_is_shown_once_and_rotated(ivr_line: Line2) -> None:
    client, admin = ivr_line.client, ivr_line.admin
    body = {"name": "acc", "amount_source": "account", "lookup_url": "http://127.0.0.1:9/l"}
    created = await ivr_line.flow(**body)
    assert created["lookup_secret"].startswith("ivrsec_")
    shown = await client.get(f"/api/v1/ivr/flows/{created['id']}", headers=admin)
    assert "lookup_secret" not in shown.json()
    rotated = await client.put(
        f"/api/v1/ivr/flows/{created['id']}?rotate_secret=true", json=body, headers=admin
    )
    assert rotated.json()["lookup_secret"] not in ("", created["lookup_secret"])


async def test_an_uploaded_greeting_is_what_callers_hear(ivr_line: Line2) -> None:
    client, admin = ivr_line.client, ivr_line.admin
    recording = wav(tone(1.0))
    uploaded = await client.put(
        "/api/v1/ivr/prompts/en/acme_hello",
        content=recording,
        headers={**admin, "Content-Type": "audio/wav"},
    )
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json()["seconds"] == 1.0
    listed = (await client.get("/api/v1/ivr/prompts", headers=admin)).json()
    assert [p["name"] for p in listed["own"]] == ["acme_hello"]
    assert "greeting" in listed["standard"]["en"]

    flow = await ivr_line.flow(**BILL, prompts={"greeting": "acme_hello"})
    caller = await ivr_line.call("CA-ivr-own", "bills")
    heard = (await caller.hear()).audio
    amount = spoken(flow, PAUSE, "amount_due", "twelve", "pounds", "fifty")
    assert heard == ulaw_encode(tone(1.0)) + amount
    await caller.hang_up()


async def test_bad_recordings_are_refused(ivr_line: Line2) -> None:
    client, admin = ivr_line.client, ivr_line.admin
    for path, body, code in [
        ("/api/v1/ivr/prompts/en/hello", wav(tone(1.0), rate=44100), "invalid_audio"),
        ("/api/v1/ivr/prompts/en/Bad-Name", wav(tone(1.0)), "invalid_name"),
        ("/api/v1/ivr/prompts/fr/hello", wav(tone(1.0)), "invalid_language"),
    ]:
        refused = await client.put(path, content=body, headers=admin)
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == code
    assert (await client.delete("/api/v1/ivr/prompts/en/hello", headers=admin)).status_code == 404


async def test_only_admins_manage_and_supervisors_follow(ivr_line: Line2) -> None:
    client = ivr_line.client
    agent = await bearer(ivr_line, "alice", "agent")
    supervisor = await bearer(ivr_line, "sue", "supervisor")
    assert (await client.get("/api/v1/ivr/flows", headers=agent)).status_code == 403
    assert (await client.get("/api/v1/ivr/flows", headers=supervisor)).status_code == 403
    assert (await client.get("/api/v1/ivr/sessions", headers=agent)).status_code == 403

    await ivr_line.flow(**BILL)
    caller = await ivr_line.call("CA-ivr-seen", "bills")
    await caller.hear()
    await caller.hang_up()
    await ivr_line.outcome("CA-ivr-seen")
    sessions = (await client.get("/api/v1/ivr/sessions", headers=supervisor)).json()
    assert [(s["call_id"], s["outcome"], s["amount"]) for s in sessions] == [
        ("CA-ivr-seen", "abandoned", 1250)
    ]
    one = await client.get(f"/api/v1/ivr/sessions/{sessions[0]['id']}", headers=supervisor)
    assert one.json()["stage"] == "ended"
