"""Links by e-mail through a real SMTP server and by SMS through the Twilio-wire simulator,
with retries, failures, delivery reports and their signatures; the outbox when no provider
is set."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.integration.remote.conftest import (
    SMS_TOKEN,
    Desk,
    Mailbox,
    link_in,
    running_desk,
)
from transact.communications import channels
from transact.communications.domain import twilio_signature


def email_settings(mailbox: Mailbox) -> dict[str, object]:
    return {
        "sender": {"name": "Example Shop", "email": "pay@shop.example"},
        "email": {"host": "127.0.0.1", "port": mailbox.port, "security": "none"},
    }


def sms_settings(sms_url: str) -> dict[str, object]:
    return {
        "sms": {
            "base_url": sms_url,
            "account_sid": "AC0123456789abcdef",
            "auth_token": SMS_TOKEN,
            "from": "+447700900000",
        }
    }


async def test_an_email_link_arrives_in_text_and_html(desk: Desk, mailbox: Mailbox) -> None:
    await desk.link_settings(merchant_name="Example Shop")
    await desk.comms_settings(email_settings(mailbox))
    response = await desk.create(channel="email", to="Jane.Doe@Example.COM")
    assert response.status_code == 201, response.text
    link = response.json()
    assert link["to"] == "J***@example.com"
    [mail] = await mailbox.wait()
    assert mail["To"] == "Jane.Doe@example.com"
    assert mail["From"] == "Example Shop <pay@shop.example>"
    assert "Example Shop" in mail["Subject"]
    text = mail.get_body(preferencelist=("plain",))
    html = mail.get_body(preferencelist=("html",))
    assert text is not None
    assert html is not None
    assert link_in(text.get_content()) == link["url"]
    assert f'href="{link["url"]}"' in html.get_content()
    assert "£12.50" in text.get_content()
    [sent] = await desk.wait_for("message.sent")
    assert sent.to_masked == "J***@example.com"  # type: ignore[attr-defined]
    assert sent.about == link["id"]  # type: ignore[attr-defined]
    seen = await desk.wait_link(link["id"], lambda s: s["message"]["status"] == "sent")
    assert seen["message"]["reason"] is None
    assert "Jane" not in str([m.model_dump() for m in desk.published])


async def test_a_deferred_email_is_retried_and_a_refused_one_fails(
    desk: Desk, mailbox: Mailbox
) -> None:
    await desk.comms_settings(email_settings(mailbox))
    mailbox.refuse.append("451 4.3.0 Try again later")
    deferred = (await desk.create(channel="email", to="later@shop.example")).json()
    await mailbox.wait(1, seconds=15)
    [sent] = await desk.wait_for("message.sent")
    assert sent.attempts == 2  # type: ignore[attr-defined]

    mailbox.refuse.append("550 5.1.1 No such user")
    refused = (await desk.create(channel="email", to="nobody@shop.example")).json()
    [failed] = await desk.wait_for("message.failed")
    assert "refused" in failed.reason  # type: ignore[attr-defined]
    seen = await desk.wait_link(refused["id"], lambda s: s["message"]["status"] == "failed")
    assert "550" in seen["message"]["reason"]
    assert (await desk.get(deferred["id"]))["message"]["status"] == "sent"


async def test_an_sms_link_is_sent_and_reported_delivered(
    tmp_path: Path, simulator: str, sms_simulator: str
) -> None:
    async with running_desk(tmp_path, simulator) as desk:
        await desk.comms_settings(sms_settings(sms_simulator))
        link = (await desk.create(channel="sms", to="+44 7700 900123")).json()
        assert link["to"] == "+44*******123"
        await desk.wait_link(link["id"], lambda s: s["message"]["status"] == "delivered")
        async with httpx.AsyncClient() as http:
            messages = (await http.get(f"{sms_simulator}/_sim/messages")).json()["messages"]
        [sms] = [m for m in messages if m["to"] == "+447700900123"]
        assert link_in(sms["body"]) == link["url"]
        assert sms["segments"] == 1  # one GSM-7 message
        assert sms["sender"] == "+447700900000"
        assert [c["answer"] for c in sms["callbacks"]] == [204, 204]
        await desk.wait_for("message.delivered")

        unreachable = (await desk.create(channel="sms", to="+447700900003")).json()
        seen = await desk.wait_link(unreachable["id"], lambda s: s["message"]["status"] == "failed")
        assert seen["message"]["reason"] == "the handset is switched off or unreachable"

        invalid = (await desk.create(channel="sms", to="+15005550001")).json()
        seen = await desk.wait_link(invalid["id"], lambda s: s["message"]["status"] == "failed")
        assert seen["message"]["reason"] == "the number is not a valid phone number"


async def test_the_provider_busy_is_retried(
    tmp_path: Path, simulator: str, sms_simulator: str
) -> None:
    async with running_desk(tmp_path, simulator) as desk:
        await desk.comms_settings(sms_settings(sms_simulator))
        async with httpx.AsyncClient() as http:
            await http.post(f"{sms_simulator}/_sim/faults", json={"status": 503, "count": 1})
        link = (await desk.create(channel="sms", to="+447700900456")).json()
        await desk.wait_link(link["id"], lambda s: s["message"]["status"] == "delivered")
        [sent] = [m for m in desk.events("message.sent") if m.about == link["id"]]  # type: ignore[attr-defined]
        assert sent.attempts == 2  # type: ignore[attr-defined]


async def test_a_status_callback_must_carry_twilio_s_signature(
    tmp_path: Path, simulator: str, sms_simulator: str
) -> None:
    async with running_desk(tmp_path, simulator) as desk:
        await desk.comms_settings(sms_settings(sms_simulator))
        url = f"{desk.url}/api/v1/communications/sms/{desk.tenant_id}/status"
        params = {"MessageSid": "SMnope", "MessageStatus": "delivered"}
        forged = await desk.http.post(url, data=params, headers={"X-Twilio-Signature": "AAAA"})
        assert forged.status_code == 403
        unsigned = await desk.http.post(url, data=params)
        assert unsigned.status_code == 403
        signed = await desk.http.post(
            url,
            data=params,
            headers={"X-Twilio-Signature": twilio_signature(SMS_TOKEN, url, params)},
        )
        assert signed.status_code == 204


async def test_with_no_provider_messages_land_in_the_outbox(tmp_path: Path, simulator: str) -> None:
    async with running_desk(tmp_path, simulator, demo=True) as desk:
        link = (await desk.create(channel="sms", to="+447700900777")).json()
        await desk.wait_link(link["id"], lambda s: s["message"]["status"] == "delivered")
        page = await desk.http.get("/dev/outbox")
        assert page.status_code == 200
        assert link_in(page.text) == link["url"]
        assert "+447700900777" not in page.text  # masked even here
        settings = (
            await desk.http.get("/api/v1/communications/settings", headers=await desk.admin())
        ).json()
        assert settings["email"] is None
        assert settings["sms"] is None


async def test_the_outbox_page_exists_only_in_demo_mode(desk: Desk) -> None:
    assert (await desk.http.get("/dev/outbox")).status_code == 404
    await asyncio.sleep(0)


async def test_secrets_are_sealed_and_never_shown(desk: Desk, mailbox: Mailbox) -> None:
    body = email_settings(mailbox)
    body["email"] = {**body["email"], "username": "shop", "password": "s3cret-pass"}  # type: ignore[dict-item]
    await desk.comms_settings(body)
    shown = await desk.http.get("/api/v1/communications/settings", headers=await desk.admin())
    assert shown.json()["secrets"] == {"email_password": True, "sms_auth_token": False}
    assert "s3cret-pass" not in shown.text
    from tests.leaks import database_dump

    assert "s3cret-pass" not in await database_dump(desk.kernel.db.engine)
    bad = await desk.http.put(
        "/api/v1/communications/settings",
        json={"templates": {"payment_link": {"sms": "Pay now"}}},
        headers=await desk.admin(),
    )
    assert bad.status_code == 422
    assert "must show the link" in bad.json()["error"]["message"]


async def test_an_sms_whose_answer_was_lost_is_not_sent_twice(
    tmp_path: Path, simulator: str, sms_simulator: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The provider takes the message but answers after our timeout: before trying again
    # we ask it, find the message, and do not text the customer a second time.
    monkeypatch.setattr(channels, "SMS_TIMEOUT", 0.5)
    async with running_desk(tmp_path, simulator) as desk:
        await desk.comms_settings(sms_settings(sms_simulator))
        async with httpx.AsyncClient() as http:
            await http.post(f"{sms_simulator}/_sim/faults", json={"slow": 1.5, "count": 1})
        link = (await desk.create(channel="sms", to="+447700900321")).json()
        await desk.wait_link(link["id"], lambda s: s["message"]["status"] == "delivered")
        async with httpx.AsyncClient() as http:
            messages = (await http.get(f"{sms_simulator}/_sim/messages")).json()["messages"]
        [sms] = [m for m in messages if m["to"] == "+447700900321"]
        [sent] = [m for m in desk.events("message.sent") if m.about == link["id"]]  # type: ignore[attr-defined]
        assert sent.attempts == 2  # type: ignore[attr-defined]
        assert link_in(sms["body"]) == link["url"]
