"""Voice's HTTP face: whether speech capture can be offered in this deployment."""

# No `from __future__ import annotations`: FastAPI must see the closures used in Depends().

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from transact.kernel import Kernel
from transact.kernel.security import Principal, Role, require
from transact.voice.flow import Voice


def build_router(kernel: Kernel, voice: Voice, engine: str) -> APIRouter:
    router = APIRouter(tags=["voice"])
    user = require(kernel.authenticator, Role.AGENT, Role.SUPERVISOR, Role.ADMIN)

    @router.get("/api/v1/voice/status")
    async def status(principal: Annotated[Principal, Depends(user)]) -> dict[str, Any]:
        """`speech`: whether a capture may be spoken here (the Agent UI offers it then)."""
        return {"speech": voice.available, "engine": engine if voice.available else None}

    return router
