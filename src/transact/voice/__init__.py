"""The voice service: realtime transcription, spoken-digit capture and transcript redaction.

`build()` wires the service; the recognizer is chosen by `TRANSACT_VOICE_ENGINE`
(`whisper`, or `off`) and made on the first speech capture, so `transact run` starts
without loading a model. Another recognizer (a tenant's cloud service) plugs in as an
entry of `ENGINES`: a factory of a `Transcriber`.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

import structlog

from transact.kernel.errors import ConfigError
from transact.voice import store as _store  # noqa: F401  (registers voice's tables)

if TYPE_CHECKING:
    from transact.kernel import Kernel, Service
    from transact.voice.flow import EngineFactory
    from transact.voice.transcriber import Transcriber

__all__ = ["ENGINES", "build"]

log = structlog.get_logger("transact.voice")
OFF = "off"
RETENTION_CHECK_SECONDS = 3600.0


def _whisper() -> Transcriber:
    from transact.voice.transcriber import WhisperTranscriber

    return WhisperTranscriber()


ENGINES: dict[str, EngineFactory] = {"whisper": _whisper}


def engine_factory(name: str) -> EngineFactory | None:
    """The factory `TRANSACT_VOICE_ENGINE` names; None when speech capture is off here."""
    if name == OFF:
        return None
    if name not in ENGINES:
        choices = ", ".join(sorted([*ENGINES, OFF]))
        raise ConfigError(f"TRANSACT_VOICE_ENGINE={name!r} is unknown; use one of: {choices}")
    if name == "whisper" and importlib.util.find_spec("faster_whisper") is None:
        log.warning("voice.engine_missing", engine=name)
        return None
    return ENGINES[name]


def build(kernel: Kernel) -> Service:
    from transact.kernel import Service
    from transact.voice import handlers
    from transact.voice.api import build_router
    from transact.voice.flow import Voice

    name = kernel.settings.voice_engine
    voice = Voice(kernel, engine_factory(name), readback=kernel.settings.voice_readback)
    service = Service(name="voice", routers=[build_router(kernel, voice, name)])
    handlers.subscribe(service, voice)
    service.on_stop.append(voice.close)

    # Transcripts are kept for the retention period only: checked at start and hourly.
    async def forget_old_transcripts() -> None:
        await voice.transcription.forget_old()

    service.on_start.append(forget_old_transcripts)
    service.every(RETENTION_CHECK_SECONDS, forget_old_transcripts, "transcript-retention")
    return service
