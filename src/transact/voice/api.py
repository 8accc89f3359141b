"""Voice's HTTP face: whether speech capture can be offered to the tenant, its call
transcription setting, its recognizer, and a call's redacted transcript."""

# No `from __future__ import annotations`: FastAPI must see the closures used in Depends().

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    StrictStr,
    field_validator,
)

from transact.kernel import Kernel
from transact.kernel.security import Principal, Role, Scope, require
from transact.voice.flow import Voice
from transact.voice.recognizers import Choice

KEY_CHARACTERS = re.compile(r"[!-~]+")


class SettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    transcribe_calls: StrictBool


class RecognizerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    engine: Annotated[StrictStr, Field(min_length=1, max_length=32)]
    api_key: Annotated[SecretStr, Field(min_length=8, max_length=256)] | None = None
    model: Annotated[StrictStr, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")] | None = None

    @field_validator("api_key")
    @classmethod
    def _fits_a_header(cls, key: SecretStr | None) -> SecretStr | None:
        # It goes into an HTTP header: printable ASCII, no spaces.
        if key is not None and not KEY_CHARACTERS.fullmatch(key.get_secret_value()):
            raise ValueError("api_key must be printable ASCII without spaces")
        return key


def build_router(kernel: Kernel, voice: Voice) -> APIRouter:
    router = APIRouter(tags=["voice"])
    auth = kernel.authenticator
    user = require(auth, Role.AGENT, Role.SUPERVISOR, Role.ADMIN)
    admin = require(auth, Role.ADMIN)
    reader = require(auth, Role.AGENT, Role.SUPERVISOR, Role.ADMIN, scope=Scope.CALLS_READ)
    transcription = voice.transcription
    recognizers = voice.recognizers

    @router.get("/api/v1/voice/status")
    async def status(principal: Annotated[Principal, Depends(user)]) -> dict[str, Any]:
        """`speech`: whether the tenant's captures may be spoken (the Agent UI offers it
        then), and the recognizer that hears them."""
        engine = await recognizers.engine_of(principal.tenant_id)
        return {"speech": engine is not None, "engine": engine}

    async def settings_of(tenant_id: str, on: bool) -> dict[str, Any]:
        # `available` False: no recognizer, so no call is transcribed whatever it says.
        return {"transcribe_calls": on, "available": await recognizers.available(tenant_id)}

    @router.get("/api/v1/voice/settings")
    async def get_settings(principal: Annotated[Principal, Depends(user)]) -> dict[str, Any]:
        tenant_id = principal.tenant_id
        return await settings_of(tenant_id, await transcription.transcribes_calls(tenant_id))

    @router.put("/api/v1/voice/settings")
    async def put_settings(
        body: SettingsIn, principal: Annotated[Principal, Depends(admin)]
    ) -> dict[str, Any]:
        """Call transcription for the calls that start from now on; off by default."""
        on = await transcription.set_transcribe_calls(principal, body.transcribe_calls)
        return await settings_of(principal.tenant_id, on)

    def recognizer_of(chosen: Choice) -> dict[str, Any]:
        return {**chosen.to_dict(), "deployment_engine": recognizers.deployment_name}

    @router.get("/api/v1/voice/recognizer")
    async def get_recognizer(principal: Annotated[Principal, Depends(admin)]) -> dict[str, Any]:
        """The tenant's recognizer: `deployment`, or its own cloud account (never the key)."""
        return recognizer_of(await recognizers.choice(principal.tenant_id))

    @router.put("/api/v1/voice/recognizer")
    async def put_recognizer(
        body: RecognizerIn, principal: Annotated[Principal, Depends(admin)]
    ) -> dict[str, Any]:
        """Hear the tenant's callers with its own cloud account (`engine` a cloud engine,
        `api_key`, `model`), or with the deployment's recognizer (`engine: deployment`).
        The account is tried first: 422 `recognizer_unusable` when it does not work."""
        key = body.api_key.get_secret_value() if body.api_key is not None else None
        return recognizer_of(await recognizers.choose(principal, body.engine, key, body.model))

    @router.get("/api/v1/calls/{call_id}/transcript")
    async def transcript(
        call_id: str, principal: Annotated[Principal, Depends(reader)]
    ) -> dict[str, Any]:
        """The call's transcript outside captures, card data already labelled; 404 for a
        call not transcribed, unknown, or held by another agent."""
        said = await transcription.transcript(principal, call_id)
        return {
            "call_id": call_id,
            "utterances": [{"seq": u.seq, "at": u.at.isoformat(), "text": u.text} for u in said],
        }

    return router
