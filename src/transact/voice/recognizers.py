"""Which recognizer hears a tenant's callers: the deployment's (`TRANSACT_VOICE_ENGINE`),
or the tenant's own account at a cloud recognizer, chosen by its admin
(`PUT /api/v1/voice/recognizer`, docs/voice.md).

A tenant's API key is sealed with the tenant's key before it is stored, never returned,
logged or audited. The account is tried before it is saved: a key the service refuses is
a clear 422 for the admin, not a silent capture later. The choice is looked up when a
capture or a transcribed call needs a recognizer and kept here for `CHOICE_TTL_S`, so
a change reaches the next stream (at once in the process that took it). A stored key
that cannot be opened refuses speech: it is never replaced by the deployment's
recognizer, since the tenant chose where its callers' card audio goes.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Final

import structlog

from transact.kernel import Kernel, audit
from transact.kernel.errors import ApiError, ConfigError, VaultError
from transact.kernel.security import Principal
from transact.voice import store
from transact.voice.engines import CLOUD_ENGINES, CloudAccount, EngineFactory, tenant_factory
from transact.voice.transcriber import (
    Mode,
    RecognizerUnavailable,
    Transcriber,
    TranscriberSession,
)

log = structlog.get_logger("transact.voice")

DEPLOYMENT: Final = "deployment"  # the tenant uses the deployment's recognizer
CHOICE_TTL_S: Final = 30.0
KEY_CONTEXT: Final = b"voice-recognizer-key"


@dataclass(frozen=True)
class Choice:
    """What an admin reads of the tenant's recognizer: never the key."""

    engine: str  # DEPLOYMENT, or a name in CLOUD_ENGINES
    model: str | None
    key_set: bool

    def to_dict(self) -> dict[str, object]:
        return {"engine": self.engine, "model": self.model, "key_set": self.key_set}


def choice_of(row: store.RecognizerRow) -> Choice:
    return Choice(row.engine or DEPLOYMENT, row.model, row.sealed_key is not None)


def unusable(message: str) -> ApiError:
    return ApiError(422, "recognizer_unusable", message)


class Unusable:
    """A tenant's recognizer whose stored key cannot be opened: every stream is refused."""

    def __init__(self, name: str) -> None:
        self.name = name

    def open(self, *, mode: Mode) -> TranscriberSession:
        raise RecognizerUnavailable(f"{self.name}: the tenant's key cannot be opened")


def try_stream(made: Transcriber) -> None:
    """Open a stream and drop it unused: the service checks the key when a stream opens."""
    made.open(mode="digits").close()


class Recognizers:
    def __init__(self, kernel: Kernel, deployment: EngineFactory | None, name: str) -> None:
        self.kernel = kernel
        self.deployment_name = name if deployment is not None else None
        self._deployment_factory = deployment
        self._deployment: Transcriber | None = None
        self._lock = asyncio.Lock()
        # Per tenant: until when its row is trusted, the row, and the recognizer made of it
        # (None: the deployment's). Kept while the row is unchanged: a cloud recognizer
        # remembers that its service is down.
        self._tenants: dict[str, tuple[float, store.RecognizerRow, Transcriber | None]] = {}
        # Bumped by each choice made here: a lookup that read the row before it does not
        # cache what it read (it would keep a key just deleted for CHOICE_TTL_S).
        self._changes: dict[str, int] = {}

    # --- what hears a tenant ---------------------------------------------------------------

    async def for_tenant(self, tenant_id: str) -> Transcriber | None:
        """The tenant's own recognizer, else the deployment's (made on first use: the model
        loads in a thread, once); None when neither exists."""
        own = await self._own(tenant_id)
        if own is not None:
            return own
        if self._deployment is None and self._deployment_factory is not None:
            async with self._lock:
                if self._deployment is None:
                    self._deployment = await asyncio.to_thread(self._deployment_factory)
        return self._deployment

    async def engine_of(self, tenant_id: str) -> str | None:
        """The name of what hears the tenant's callers; None: speech is not offered."""
        own = await self._own(tenant_id)
        return own.name if own is not None else self.deployment_name

    async def available(self, tenant_id: str) -> bool:
        return await self.engine_of(tenant_id) is not None

    async def _own(self, tenant_id: str) -> Transcriber | None:
        known = self._tenants.get(tenant_id)
        now = time.monotonic()
        if known is not None and known[0] > now:
            return known[2]
        changes = self._changes.get(tenant_id, 0)
        async with self.kernel.db.transaction() as session:
            row = await store.recognizer(session, tenant_id)
        made = known[2] if known is not None and known[1] == row else self._made(tenant_id, row)
        if self._changes.get(tenant_id, 0) == changes:
            self._tenants[tenant_id] = (now + CHOICE_TTL_S, row, made)
        return made

    def _made(self, tenant_id: str, row: store.RecognizerRow) -> Transcriber | None:
        if row.engine is None:
            return None
        key = self._stored_key(tenant_id, row)
        try:
            if key is not None:
                account = CloudAccount(key, row.model)
                return tenant_factory(row.engine, self.kernel.settings, account)()
        except (KeyError, ConfigError) as exc:
            log.warning("voice.tenant_recognizer_unusable", error=type(exc).__name__)
        # Not the deployment's recognizer instead: the tenant chose where its callers'
        # card audio goes. Its agents are told speech is unavailable; its admin sets the
        # key again.
        return Unusable(row.engine)

    def _stored_key(self, tenant_id: str, row: store.RecognizerRow) -> str | None:
        """The tenant's stored key in clear; None when there is none or it cannot be opened
        (the master key that sealed it was retired: logged)."""
        if row.sealed_key is None:
            return None
        try:
            return self.kernel.vault.unseal(tenant_id, row.sealed_key, KEY_CONTEXT).decode()
        except (VaultError, UnicodeDecodeError) as exc:
            log.warning("voice.tenant_recognizer_unusable", error=type(exc).__name__)
            return None

    # --- the admin's choice ----------------------------------------------------------------

    async def choice(self, tenant_id: str) -> Choice:
        async with self.kernel.db.transaction() as session:
            return choice_of(await store.recognizer(session, tenant_id))

    async def choose(
        self, principal: Principal, engine: str, api_key: str | None, model: str | None
    ) -> Choice:
        """Set the tenant's recognizer: DEPLOYMENT, or a cloud engine with the tenant's
        account (a key given now, or the one stored for the same engine). The account is
        tried first; nothing is saved when it does not work."""
        tenant_id = principal.tenant_id
        if engine == DEPLOYMENT and (api_key is not None or model is not None):
            raise ApiError(422, "invalid_request", "api_key and model apply to a cloud engine only")
        if engine == DEPLOYMENT:
            chosen = store.RecognizerRow(None, None, None)
        elif engine in CLOUD_ENGINES:
            chosen = await self._cloud_row(tenant_id, engine, api_key, model)
        else:
            names = ", ".join([DEPLOYMENT, *sorted(CLOUD_ENGINES)])
            raise ApiError(422, "invalid_engine", f"engine must be one of: {names}")
        async with self.kernel.db.transaction() as session:
            await store.set_recognizer(session, tenant_id, chosen)
            await audit.append(
                session,
                action="voice.recognizer_changed",
                actor=principal.actor,
                tenant_id=tenant_id,
                target=tenant_id,
                details={"engine": engine, "model": model, "key_given": api_key is not None},
            )
        self._changes[tenant_id] = self._changes.get(tenant_id, 0) + 1
        self._tenants.pop(tenant_id, None)
        return choice_of(chosen)

    async def _cloud_row(
        self, tenant_id: str, engine: str, api_key: str | None, model: str | None
    ) -> store.RecognizerRow:
        if api_key is None:
            async with self.kernel.db.transaction() as session:
                stored = await store.recognizer(session, tenant_id)
            api_key = self._stored_key(tenant_id, stored) if stored.engine == engine else None
            if api_key is None:
                raise unusable(f"api_key is required to use {engine}")
        try:
            made = tenant_factory(engine, self.kernel.settings, CloudAccount(api_key, model))()
        except ConfigError as exc:
            # The deployment's settings for this engine (its URL) are wrong: the
            # operator's to mend, not the tenant's.
            log.error("voice.cloud_engine_misconfigured", engine=engine, error=str(exc))
            raise ApiError(
                503, "recognizer_not_configured", f"{engine} is not configured here"
            ) from None
        try:
            await asyncio.to_thread(try_stream, made)
        except RecognizerUnavailable as exc:
            # The adapters' messages name a status or close code, never the key.
            raise unusable(f"{engine} could not be used with this account: {exc}") from None
        sealed = self.kernel.vault.seal(tenant_id, api_key.encode(), KEY_CONTEXT)
        return store.RecognizerRow(engine, model, sealed)
