"""The voice service: realtime transcription, spoken-digit capture and transcript redaction.

`build()` wires the service; the recognizer is chosen by `TRANSACT_VOICE_ENGINE`
(`whisper`, `deepgram`, or `off`) and made on the first speech capture, so `transact
run` starts without loading a model. Another recognizer plugs in as an entry of
`ENGINES` (a factory of a `Transcriber`), or of `CLOUD_ENGINES` where it needs the
settings (a key, a URL), which are checked when the service is built.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

import structlog

from transact.kernel.errors import ConfigError
from transact.voice import store as _store  # noqa: F401  (registers voice's tables)

if TYPE_CHECKING:
    from collections.abc import Callable

    from transact.kernel import Kernel, Service
    from transact.kernel.settings import Settings
    from transact.voice.flow import EngineFactory
    from transact.voice.transcriber import Transcriber

__all__ = ["ENGINES", "build"]

log = structlog.get_logger("transact.voice")
OFF = "off"
RETENTION_CHECK_SECONDS = 3600.0


def _whisper() -> Transcriber:
    from transact.voice.transcriber import WhisperTranscriber

    return WhisperTranscriber()


def _deepgram(settings: Settings) -> EngineFactory:
    from transact.voice.deepgram import DeepgramSettings, DeepgramTranscriber

    key = settings.deepgram_api_key
    chosen = DeepgramSettings(
        api_key=key.get_secret_value() if key is not None else "",
        url=settings.deepgram_url,
        model=settings.deepgram_model,
    )
    return lambda: DeepgramTranscriber(chosen)


ENGINES: dict[str, EngineFactory] = {"whisper": _whisper}
CLOUD_ENGINES: dict[str, Callable[[Settings], EngineFactory]] = {"deepgram": _deepgram}


def engine_factory(name: str, settings: Settings) -> EngineFactory | None:
    """The factory `TRANSACT_VOICE_ENGINE` names; None when speech capture is off here.
    A cloud engine's settings are checked now: a missing key fails the start."""
    if name == OFF:
        return None
    if name in CLOUD_ENGINES:
        return CLOUD_ENGINES[name](settings)
    if name not in ENGINES:
        choices = ", ".join(sorted([*ENGINES, *CLOUD_ENGINES, OFF]))
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
    factory = engine_factory(name, kernel.settings)
    voice = Voice(kernel, factory, readback=kernel.settings.voice_readback)
    service = Service(name="voice", routers=[build_router(kernel, voice, name)])
    handlers.subscribe(service, voice)
    service.on_stop.append(voice.close)

    # Transcripts are kept for the retention period only: checked at start and hourly.
    async def forget_old_transcripts() -> None:
        await voice.transcription.forget_old()

    service.on_start.append(forget_old_transcripts)
    service.every(RETENTION_CHECK_SECONDS, forget_old_transcripts, "transcript-retention")
    return service
