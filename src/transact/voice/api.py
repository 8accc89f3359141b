"""Voice's HTTP face: whether speech capture can be offered in this deployment, the
tenant's call transcription setting, and a call's redacted transcript."""

# No `from __future__ import annotations`: FastAPI must see the closures used in Depends().

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, StrictBool

from transact.kernel import Kernel
from transact.kernel.security import Principal, Role, Scope, require
from transact.voice.flow import Voice


class SettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    transcribe_calls: StrictBool


def build_router(kernel: Kernel, voice: Voice, engine: str) -> APIRouter:
    router = APIRouter(tags=["voice"])
    auth = kernel.authenticator
    user = require(auth, Role.AGENT, Role.SUPERVISOR, Role.ADMIN)
    admin = require(auth, Role.ADMIN)
    reader = require(auth, Role.AGENT, Role.SUPERVISOR, Role.ADMIN, scope=Scope.CALLS_READ)
    transcription = voice.transcription

    @router.get("/api/v1/voice/status")
    async def status(principal: Annotated[Principal, Depends(user)]) -> dict[str, Any]:
        """`speech`: whether a capture may be spoken here (the Agent UI offers it then)."""
        return {"speech": voice.available, "engine": engine if voice.available else None}

    def settings_of(on: bool) -> dict[str, Any]:
        # `available` False: no recognizer here, so no call is transcribed whatever it says.
        return {"transcribe_calls": on, "available": voice.available}

    @router.get("/api/v1/voice/settings")
    async def get_settings(principal: Annotated[Principal, Depends(user)]) -> dict[str, Any]:
        return settings_of(await transcription.transcribes_calls(principal.tenant_id))

    @router.put("/api/v1/voice/settings")
    async def put_settings(
        body: SettingsIn, principal: Annotated[Principal, Depends(admin)]
    ) -> dict[str, Any]:
        """Call transcription for the calls that start from now on; off by default."""
        return settings_of(
            await transcription.set_transcribe_calls(principal, body.transcribe_calls)
        )

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
