"""The recognizers voice can use, by name: `ENGINES` run here (a factory of a
`Transcriber`), `CLOUD_ENGINES` stream to a service and need an account (a key, a model),
which is the deployment's (`TRANSACT_*` settings) or a tenant's own (docs/voice.md).
An account is checked when its factory is made: a missing key fails then, not on the
first call."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from transact.kernel.errors import ConfigError

if TYPE_CHECKING:
    from transact.kernel.settings import Settings
    from transact.voice.transcriber import Transcriber

log = structlog.get_logger("transact.voice")

OFF = "off"
EngineFactory = Callable[[], "Transcriber"]


@dataclass(frozen=True)
class CloudAccount:
    """A tenant's own account at a cloud recognizer; the model None: the deployment's."""

    api_key: str = field(repr=False)  # never in logs or tracebacks
    model: str | None = None


CloudEngine = Callable[["Settings", "CloudAccount | None"], EngineFactory]


def _whisper() -> Transcriber:
    from transact.voice.transcriber import WhisperTranscriber

    return WhisperTranscriber()


def _deepgram(settings: Settings, account: CloudAccount | None) -> EngineFactory:
    """Deepgram with the tenant's account, or the deployment's; always the deployment's
    URL (a tenant never points card audio at a host of its choosing)."""
    from transact.voice.deepgram import DeepgramSettings, DeepgramTranscriber

    if account is None:
        key = settings.deepgram_api_key
        api_key, model = (key.get_secret_value() if key else ""), settings.deepgram_model
    else:
        api_key, model = account.api_key, account.model or settings.deepgram_model
    chosen = DeepgramSettings(api_key=api_key, url=settings.deepgram_url, model=model)
    return lambda: DeepgramTranscriber(chosen)


ENGINES: dict[str, EngineFactory] = {"whisper": _whisper}
CLOUD_ENGINES: dict[str, CloudEngine] = {"deepgram": _deepgram}


def engine_factory(name: str, settings: Settings) -> EngineFactory | None:
    """The deployment's factory, the one `TRANSACT_VOICE_ENGINE` names; None when it
    offers no speech capture of its own (a tenant's own cloud account still may)."""
    if name == OFF:
        return None
    if name in CLOUD_ENGINES:
        return CLOUD_ENGINES[name](settings, None)
    if name not in ENGINES:
        choices = ", ".join(sorted([*ENGINES, *CLOUD_ENGINES, OFF]))
        raise ConfigError(f"TRANSACT_VOICE_ENGINE={name!r} is unknown; use one of: {choices}")
    if name == "whisper" and importlib.util.find_spec("faster_whisper") is None:
        log.warning("voice.engine_missing", engine=name)
        return None
    return ENGINES[name]


def tenant_factory(name: str, settings: Settings, account: CloudAccount) -> EngineFactory:
    """A tenant's own cloud recognizer; KeyError for a name not in `CLOUD_ENGINES`,
    ConfigError for an account it cannot use."""
    return CLOUD_ENGINES[name](settings, account)
