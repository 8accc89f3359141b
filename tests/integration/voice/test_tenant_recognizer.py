"""A tenant's own cloud recognizer (`/api/v1/voice/recognizer`), against a real server
that speaks Deepgram's live audio protocol: the account is tried before it is saved,
its key is sealed and never shown, the tenant's captures stream with its own key while
another tenant keeps the deployment's recognizer, and an agent is told when the
recognizer is down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_phone_payment import PASSWORD, bearer
from tests.integration.telephony.conftest import serving
from tests.integration.voice import deepgram_server
from tests.integration.voice.test_voice_service import GROUPS, PAN, TENANT, Ear, listening
from tests.leaks import database_dump
from tests.voice_fakes import ScriptedTranscriber
from transact import voice
from transact.auth import Accounts, SigningKeys
from transact.contracts.voice import VoiceTranscript
from transact.kernel import Kernel
from transact.kernel.errors import ApiError
from transact.kernel.security import Principal, Role
from transact.voice import store
from transact.voice.flow import RECOGNIZER_DOWN
from transact.voice.recognizers import KEY_CONTEXT

OWN_KEY = "dg-tenant-own-account-1"
PATH = "/api/v1/voice/recognizer"


@pytest.fixture
def cloud() -> Iterator[deepgram_server.ListenServer]:
    script = [[group] for group in GROUPS]
    server = deepgram_server.ListenServer(script=script, keys=(OWN_KEY,))
    with deepgram_server.listen_server(server) as running:
        yield running


@dataclass
class Admin:
    kernel: Kernel
    client: httpx.AsyncClient
    root: dict[str, str]
    agent: dict[str, str]

    async def put(self, body: dict[str, object]) -> httpx.Response:
        return await self.client.put(PATH, json=body, headers=self.root)

    async def engine(self) -> object:
        return (await self.client.get("/api/v1/voice/status", headers=self.agent)).json()


@pytest.fixture
async def admin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cloud: deepgram_server.ListenServer
) -> AsyncIterator[Admin]:
    monkeypatch.setitem(voice.ENGINES, "scripted", ScriptedTranscriber)
    services = ["gateway", "auth", "voice"]
    async with serving(tmp_path, services, voice_engine="scripted", deepgram_url=cloud.url) as line:
        accounts = Accounts(line.kernel, SigningKeys(line.kernel))
        for username, role in (("alice", "agent"), ("root", "admin")):
            await accounts.create_user(line.tenant_id, username, role, PASSWORD)
        base = line.url.replace("ws://", "http://")
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            root, agent = await bearer(client, "root"), await bearer(client, "alice")
            yield Admin(line.kernel, client, root, agent)


async def test_the_deployments_recognizer_is_the_default(admin: Admin) -> None:
    got = await admin.client.get(PATH, headers=admin.root)
    assert got.json() == {
        "engine": "deployment",
        "model": None,
        "key_set": False,
        "deployment_engine": "scripted",
    }
    assert await admin.engine() == {"speech": True, "engine": "scripted"}
    assert (await admin.client.get(PATH, headers=admin.agent)).status_code == 403
    refused = await admin.client.put(PATH, json={"engine": "deployment"}, headers=admin.agent)
    assert refused.status_code == 403


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"engine": "whisper-large"}, "invalid_engine"),
        ({"engine": "deepgram"}, "recognizer_unusable"),  # no key given nor stored
        ({"engine": "deepgram", "api_key": "short"}, "invalid_request"),
        ({"engine": "deepgram", "api_key": "has a space in it"}, "invalid_request"),
        ({"engine": "deepgram", "api_key": OWN_KEY, "model": "Nova 3"}, "invalid_request"),
        ({"engine": "deepgram", "api_key": OWN_KEY, "url": "wss://x"}, "invalid_request"),
        ({"engine": 7}, "invalid_request"),
        ({"engine": "deployment", "model": "nova-3"}, "invalid_request"),
    ],
)
async def test_bad_choices_are_clear_errors_and_change_nothing(
    admin: Admin, body: dict[str, object], code: str
) -> None:
    answer = await admin.put(body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == code
    assert (await admin.client.get(PATH, headers=admin.root)).json()["engine"] == "deployment"


async def test_a_key_the_service_refuses_is_not_saved_nor_echoed(
    admin: Admin, cloud: deepgram_server.ListenServer
) -> None:
    wrong = "dg-not-an-account-of-ours"
    answer = await admin.put({"engine": "deepgram", "api_key": wrong})
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "recognizer_unusable"
    assert "HTTP 401" in answer.text
    assert wrong not in answer.text
    assert (await admin.client.get(PATH, headers=admin.root)).json()["key_set"] is False
    assert cloud.accounts == []


async def test_a_tenants_own_account_is_tried_sealed_and_never_shown(
    admin: Admin, cloud: deepgram_server.ListenServer
) -> None:
    chosen = await admin.put({"engine": "deepgram", "api_key": OWN_KEY, "model": "nova-3"})
    assert chosen.status_code == 200, chosen.text
    assert chosen.json() == {
        "engine": "deepgram",
        "model": "nova-3",
        "key_set": True,
        "deployment_engine": "scripted",
    }
    assert cloud.accounts == [OWN_KEY], "the account was tried before it was saved"
    assert cloud.queries[0]["model"] == "nova-3"
    assert await admin.engine() == {"speech": True, "engine": "deepgram"}

    # The model alone may change: the stored key is tried again and kept.
    again = await admin.put({"engine": "deepgram", "model": "nova-2-phonecall"})
    assert again.status_code == 200, again.text
    assert cloud.accounts == [OWN_KEY, OWN_KEY]

    trail = (await admin.client.get("/api/v1/audit", headers=admin.root)).json()
    changes = [r for r in trail if r["action"] == "voice.recognizer_changed"]
    assert [c["details"]["key_given"] for c in changes] == [False, True]  # newest first
    dump = await database_dump(admin.kernel.db.engine)
    for seen in (dump, chosen.text, again.text, str(trail)):
        assert OWN_KEY not in seen

    back = await admin.put({"engine": "deployment"})
    assert back.json()["engine"] == "deployment"
    assert back.json()["key_set"] is False, "the key goes with the choice"
    assert await admin.engine() == {"speech": True, "engine": "scripted"}


def principal(tenant_id: str) -> Principal:
    return Principal(kind="user", id="usr_admin", tenant_id=tenant_id, name="root", role=Role.ADMIN)


async def hear_card(ear: Ear) -> None:
    await ear.speech_capture()
    await ear.send(ear.audio(4))
    for _ in range(100):  # a result is collected when the next audio goes
        if len(ear.events("voice.keys")) >= 4:
            return
        await ear.send(ear.audio(0))
        await asyncio.sleep(0.1)


async def test_only_the_tenant_that_chose_its_account_streams_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cloud: deepgram_server.ListenServer
) -> None:
    """No recognizer in the deployment: speech is offered to the tenant with its own
    account only, and its capture streams with its own key."""
    async with listening(
        tmp_path, monkeypatch, ScriptedTranscriber(), voice_engine="off", deepgram_url=cloud.url
    ) as ear:
        recognizers = ear.voice.recognizers
        assert not await recognizers.available(TENANT)
        await recognizers.choose(principal(TENANT), "deepgram", OWN_KEY, None)
        assert await recognizers.available(TENANT)
        assert not await recognizers.available("ten_other")

        await hear_card(ear)
        await ear.wait_for("voice.keys", 4)
        assert ear.keys() == PAN
        assert set(cloud.accounts) == {OWN_KEY}
        assert cloud.queries[-1]["model"] == "nova-2-phonecall", "the deployment's model"
        assert len(cloud.queries) == 2, "the try, then one stream for the card number"


async def test_the_agent_is_told_once_when_the_recognizer_is_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cloud: deepgram_server.ListenServer
) -> None:
    async with listening(
        tmp_path, monkeypatch, ScriptedTranscriber(), voice_engine="off", deepgram_url=cloud.url
    ) as ear:
        await ear.voice.recognizers.choose(principal(TENANT), "deepgram", OWN_KEY, None)
        cloud.keys = ()  # the account is revoked after it was chosen
        await ear.speech_capture()
        for _ in range(5):
            await ear.send(ear.audio(1))
        told = await ear.wait_for("voice.transcript")
        await asyncio.sleep(0.3)
        assert [m.text for m in ear.events("voice.transcript")] == [RECOGNIZER_DOWN]
        assert isinstance(told[0], VoiceTranscript)
        assert told[0].field == "pan"
        assert ear.keys() == ""


async def test_a_key_sealed_under_a_key_no_longer_held_falls_back_to_the_deployment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cloud: deepgram_server.ListenServer
) -> None:
    scripted = ScriptedTranscriber()
    monkeypatch.setitem(voice.ENGINES, "scripted", lambda: scripted)
    async with listening(
        tmp_path, monkeypatch, scripted, voice_engine="scripted", deepgram_url=cloud.url
    ) as ear:
        recognizers = ear.voice.recognizers
        await recognizers.choose(principal(TENANT), "deepgram", OWN_KEY, None)
        assert (await recognizers.for_tenant(TENANT)).name == "deepgram"  # type: ignore[union-attr]
        # Sealed for another tenant: this tenant's key cannot open it.
        foreign = ear.kernel.vault.seal("ten_other", OWN_KEY.encode(), KEY_CONTEXT)
        async with ear.kernel.db.transaction() as session:
            await store.set_recognizer(
                session, TENANT, store.RecognizerRow("deepgram", None, foreign)
            )
        recognizers._tenants.clear()
        assert await recognizers.for_tenant(TENANT) is scripted
        # Nor can it be kept by leaving the key out: the admin is asked for it again.
        with pytest.raises(ApiError, match="api_key is required"):
            await recognizers.choose(principal(TENANT), "deepgram", None, "nova-3")
