"""The voice service: realtime transcription, spoken-digit capture and transcript redaction.

`build()` wires the service. The deployment's recognizer is chosen by
`TRANSACT_VOICE_ENGINE` (`whisper`, `deepgram`, or `off`) and made on the first speech
capture, so `transact run` starts without loading a model; a tenant's admin may choose
its own cloud account instead (`recognizers.Recognizers`). Another recognizer plugs in
as an entry of `ENGINES` (a factory of a `Transcriber`), or of `CLOUD_ENGINES` where it
needs an account (a key, a model), checked when it is made (`voice.engines`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from transact.voice import store as _store  # noqa: F401  (registers voice's tables)
from transact.voice.engines import CLOUD_ENGINES, ENGINES, OFF, engine_factory

if TYPE_CHECKING:
    from transact.kernel import Kernel, Service

__all__ = ["CLOUD_ENGINES", "ENGINES", "OFF", "build", "engine_factory"]

RETENTION_CHECK_SECONDS = 3600.0


def build(kernel: Kernel) -> Service:
    from transact.kernel import Service
    from transact.voice import handlers
    from transact.voice.api import build_router
    from transact.voice.flow import Voice
    from transact.voice.recognizers import Recognizers

    name = kernel.settings.voice_engine
    recognizers = Recognizers(kernel, engine_factory(name, kernel.settings), name)
    voice = Voice(kernel, recognizers, readback=kernel.settings.voice_readback)
    service = Service(name="voice", routers=[build_router(kernel, voice)])
    handlers.subscribe(service, voice)
    service.on_stop.append(voice.close)

    # Transcripts are kept for the retention period only: checked at start and hourly.
    async def forget_old_transcripts() -> None:
        await voice.transcription.forget_old()

    service.on_start.append(forget_old_transcripts)
    service.every(RETENTION_CHECK_SECONDS, forget_old_transcripts, "transcript-retention")
    return service
