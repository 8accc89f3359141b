"""A tenant's own cloud recognizer (`/api/v1/voice/recognizer`), against a real server
that speaks Deepgram's live audio protocol: the account is tried before it is saved,
its key is sealed and never shown, the tenant's captures stream with its own key while
another tenant keeps the deployment's recognizer, and an agent is told when the
recognizer is down."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_phone_payment import PASSWORD, bearer
from tests.integration.telephony.conftest import serving
from tests.integration.voice import deepgram_server
from tests.integration.voice.test_voice_service import (
    GROUPS,
    PAN,
    TENANT,
    Ear,
    deepgram_deployment,
    listening,
)
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
from transact.voice.transcriber import RecognizerUnavailable

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
        ({"engine": "deepgram", "api_key": "dg-not-an-account"}, "recognizer_unusable"),
        ({"engine": "deepgram", "api_key": "short"}, "invalid_request"),
        ({"engine": "deepgram", "api_key": "has a space in it"}, "invalid_request"),
        ({"engine": "deepgram", "api_key": OWN_KEY, "model": "Nova 3"}, "invalid_request"),
        ({"engine": "deepgram", "api_key": OWN_KEY, "url": "wss://x"}, "invalid_request"),
        ({"engine": 7}, "invalid_request"),
        ({"engine": ""}, "invalid_request"),
        ({"engine": "deployment", "model": "nova-3"}, "invalid_request"),
    ],
)
async def test_bad_choices_are_clear_errors_and_change_nothing(
    admin: Admin, body: dict[str, object], code: str
) -> None:
    kept = {"engine": "deepgram", "api_key": OWN_KEY, "model": "nova-3"}
    assert (await admin.put(kept)).status_code == 200
    answer = await admin.put(body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == code
    after = (await admin.client.get(PATH, headers=admin.root)).json()
    assert (after["engine"], after["model"], after["key_set"]) == ("deepgram", "nova-3", True)


async def test_a_key_the_service_refuses_is_not_saved_nor_echoed(
    admin: Admin, cloud: deepgram_server.ListenServer
) -> None:
    missing = await admin.put({"engine": "deepgram"})  # no key given, none stored
    assert missing.status_code == 422
    assert "api_key is required" in missing.text
    wrong = "dg-not-an-account-of-ours"
    answer = await admin.put({"engine": "deepgram", "api_key": wrong})
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "recognizer_unusable"
    assert "HTTP 401" in answer.text
    assert wrong not in answer.text
    assert (await admin.client.get(PATH, headers=admin.root)).json()["key_set"] is False
    assert cloud.accounts == []


async def test_a_deployment_url_that_is_wrong_is_the_operators_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain ws:// URL to another host is never used for card audio: 503, not the
    tenant's 422."""
    monkeypatch.setitem(voice.ENGINES, "scripted", ScriptedTranscriber)
    async with listening(
        tmp_path,
        monkeypatch,
        ScriptedTranscriber(),
        voice_engine="scripted",
        deepgram_url="ws://recognizer.example.com/v1/listen",
    ) as ear:
        with pytest.raises(ApiError) as refused:
            await ear.voice.recognizers.choose(principal(TENANT), "deepgram", OWN_KEY, None)
        assert (refused.value.status, refused.value.code) == (503, "recognizer_not_configured")


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


@contextlib.asynccontextmanager
async def own_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cloud: deepgram_server.ListenServer
) -> AsyncIterator[Ear]:
    """Voice with no recognizer of the deployment's, and tenant TENANT on its own."""
    async with listening(
        tmp_path, monkeypatch, ScriptedTranscriber(), voice_engine="off", deepgram_url=cloud.url
    ) as ear:
        await ear.voice.recognizers.choose(principal(TENANT), "deepgram", OWN_KEY, None)
        yield ear


async def test_speech_is_offered_to_the_tenant_with_its_own_account_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cloud: deepgram_server.ListenServer
) -> None:
    async with own_account(tmp_path, monkeypatch, cloud) as ear:
        recognizers = ear.voice.recognizers
        assert await recognizers.engine_of(TENANT) == "deepgram"
        assert await recognizers.engine_of("ten_other") is None
        await recognizers.choose(principal(TENANT), "deployment", None, None)
        assert not await recognizers.available(TENANT)


async def test_the_tenants_capture_streams_with_its_own_key_not_the_deployments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cloud: deepgram_server.ListenServer
) -> None:
    """The deployment hears with Deepgram on its own account; the tenant chose another."""
    cloud.keys = (OWN_KEY, deepgram_server.KEY)
    async with deepgram_deployment(tmp_path, monkeypatch, cloud) as ear:
        await ear.voice.recognizers.choose(principal(TENANT), "deepgram", OWN_KEY, "nova-3")
        await ear.say_card_to_a_stream()
        await ear.wait_for("voice.keys", 4)
        assert ear.keys() == PAN
        assert cloud.accounts == [OWN_KEY, OWN_KEY], "the try, then the card number's stream"
        assert cloud.queries[-1]["model"] == "nova-3"


async def test_the_agent_is_told_once_when_the_recognizer_goes_away_mid_capture(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cloud: deepgram_server.ListenServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with own_account(tmp_path, monkeypatch, cloud) as ear:
        # The service drops the stream after its first result, and the account is
        # revoked then: the try and the capture's first stream are the last it takes.
        cloud.close_code, cloud.max_streams = 1011, 2
        await ear.speech_capture()
        for _ in range(50):
            await ear.send(ear.audio(1))
            if len(ear.events("voice.transcript")) >= 2:
                break
            await asyncio.sleep(0.1)
        told = await ear.wait_for("voice.transcript", 2)
        await asyncio.sleep(0.3)
        texts = [m.text for m in ear.events("voice.transcript")]  # type: ignore[attr-defined]
        assert texts == ["[card number: 4 digits]", RECOGNIZER_DOWN]
        assert isinstance(told[1], VoiceTranscript)
        assert told[1].field == "pan"
        assert ear.keys() == "4111"
        logged = capsys.readouterr().out
        assert logged.count("voice.recognizer_unavailable") == 1, "not a line per chunk"
        assert "HTTP 401" in logged
        assert OWN_KEY not in logged


async def test_a_key_that_cannot_be_opened_is_not_replaced_by_the_deployments_recognizer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cloud: deepgram_server.ListenServer
) -> None:
    """The tenant chose where its callers' card audio goes: speech is refused (the agent
    is told), not heard by the deployment's recognizer instead."""
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
        unusable = await recognizers.for_tenant(TENANT)
        assert unusable is not None
        assert unusable is not scripted
        assert unusable.name == "deepgram"
        with pytest.raises(RecognizerUnavailable, match="cannot be opened"):
            unusable.open(mode="digits")
        # Nor can it be kept by leaving the key out: the admin is asked for it again.
        with pytest.raises(ApiError, match="api_key is required"):
            await recognizers.choose(principal(TENANT), "deepgram", None, "nova-3")


async def test_a_lookup_that_overlaps_a_change_does_not_keep_the_old_choice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cloud: deepgram_server.ListenServer
) -> None:
    """A capture read the row just before the admin went back to the deployment: what it
    read must not be kept, or the deleted key would go on streaming for 30 s."""
    async with own_account(tmp_path, monkeypatch, cloud) as ear:
        recognizers = ear.voice.recognizers
        read, go_on = asyncio.Event(), asyncio.Event()
        real = ear.kernel.db.transaction

        @contextlib.asynccontextmanager
        async def slow() -> AsyncIterator[object]:
            async with real() as session:
                yield session
            read.set()  # the row is read and its transaction over: the change comes now
            await go_on.wait()

        monkeypatch.setattr(ear.kernel.db, "transaction", slow)
        lookup = asyncio.create_task(recognizers.engine_of(TENANT))
        await read.wait()
        monkeypatch.setattr(ear.kernel.db, "transaction", real)
        await recognizers.choose(principal(TENANT), "deployment", None, None)
        go_on.set()
        assert await lookup == "deepgram"  # it read before the change
        assert await recognizers.engine_of(TENANT) is None
