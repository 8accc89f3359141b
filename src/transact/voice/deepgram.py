"""Deepgram's streaming recognizer behind the `Transcriber` port (`TRANSACT_VOICE_ENGINE=
deepgram` for a deployment, or a tenant's own account, `PUT /api/v1/voice/recognizer`):
for callers whose accents Whisper tiny.en reads poorly (docs/voice.md).

The protocol is Deepgram's live audio API (`/v1/listen` over a WebSocket, as documented
at developers.deepgram.com, "Live Audio"): the key goes in an `Authorization: Token ...`
header, the audio format and options in the query string; the client sends raw audio
as binary frames and `{"type": "CloseStream"}` as text when done; the server sends JSON
messages, of which `{"type": "Results", "is_final": true, "channel": {"alternatives":
[{"transcript": ...}, ...]}}` are the final transcripts of an utterance. Deepgram ends
an utterance itself after `endpointing` ms of silence, so this session has no VAD.

Card data: every transcript may hold card digits. They are returned, never logged; an
error names the problem's type or the socket's close code only.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import numpy as np
import numpy.typing as npt
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.sync.client import ClientConnection, connect

from transact.kernel.audio import SAMPLE_RATE
from transact.kernel.errors import ConfigError
from transact.kernel.net import address_kind, ip_literal
from transact.voice.transcriber import Endpointing, Mode, RecognizerUnavailable, Transcript

__all__ = ["DeepgramSettings", "DeepgramTranscriber", "RecognizerUnavailable"]


@dataclass(frozen=True)
class DeepgramSettings:
    """A Deepgram account and where to stream: the deployment's settings
    (`TRANSACT_DEEPGRAM_*`, whose defaults are Deepgram's endpoint and its telephone
    model), or a tenant's own key and model with the deployment's URL; checked when
    made."""

    api_key: str = field(repr=False)  # never in logs or tracebacks
    url: str
    model: str
    endpointing_ms: int = Endpointing.pause_ms  # where the offline session ends one
    open_timeout: float = 5.0
    finish_timeout: float = 5.0  # for the last results after CloseStream

    def __post_init__(self) -> None:
        if not self.api_key:
            raise ConfigError("TRANSACT_DEEPGRAM_API_KEY is required for the deepgram engine")
        parts = urlsplit(self.url)
        # Card audio goes there: TLS always, except to a recognizer on this machine.
        if parts.scheme != "wss" and not (parts.scheme == "ws" and _loopback(parts.hostname)):
            raise ConfigError(
                f"TRANSACT_DEEPGRAM_URL must be a wss:// URL (got scheme {parts.scheme!r})"
            )


def _loopback(host: str | None) -> bool:
    address = ip_literal(host) if host else None
    return host == "localhost" or (address is not None and address_kind(address) == "loopback")


def listen_url(settings: DeepgramSettings, mode: Mode) -> str:
    """The streaming URL with the audio's format and the options for `mode`."""
    query = {
        "encoding": "linear16",
        "sample_rate": str(SAMPLE_RATE),
        "channels": "1",
        "model": settings.model,
        "language": "en",
        "endpointing": str(settings.endpointing_ms),
        "interim_results": "false",
        # Digits as numerals ("4111"), which `spoken_digits` reads like number words.
        "numerals": "true" if mode == "digits" else "false",
        "punctuate": "false" if mode == "digits" else "true",
    }
    return f"{settings.url}?{urlencode(query)}"


def final_transcript(message: str | bytes) -> Transcript | None:
    """The final transcript one server message carries; None for anything else
    (metadata, an interim result, an utterance with no words, a malformed message)."""
    try:
        data: Any = json.loads(message)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("type") != "Results" or not data.get("is_final"):
        return None
    channel = data.get("channel")
    found = channel.get("alternatives") if isinstance(channel, dict) else None
    texts = [
        alternative["transcript"].strip()
        for alternative in found or []
        if isinstance(alternative, dict) and isinstance(alternative.get("transcript"), str)
    ]
    texts = [text for text in texts if text]
    if not texts:
        return None
    return Transcript(texts[0], final=True, alternatives=tuple(texts[1:]))


class DeepgramTranscriber:
    name = "deepgram"

    def __init__(self, settings: DeepgramSettings, *, retry_after: float = 2.0) -> None:
        self.settings = settings
        # Voice opens a new stream for the next chunk after a failure, every 200 ms of
        # a call: while the service is down, try it at most this often.
        self._retry_after = retry_after
        self._down_until = 0.0

    def open(self, *, mode: Mode) -> DeepgramSession:
        if time.monotonic() < self._down_until:
            raise RecognizerUnavailable("deepgram unavailable; not retried yet")
        try:
            return DeepgramSession(self.settings, mode)
        except RecognizerUnavailable:
            self._down_until = time.monotonic() + self._retry_after
            raise


class DeepgramSession:
    """One stream: opened at once, audio sent as it comes, finals returned as they
    arrive (`feed` never waits for the recognizer), the rest collected by `finish`."""

    def __init__(self, settings: DeepgramSettings, mode: Mode) -> None:
        self._settings = settings
        try:
            self._socket: ClientConnection = connect(
                listen_url(settings, mode),
                additional_headers={"Authorization": f"Token {settings.api_key}"},
                open_timeout=settings.open_timeout,
                close_timeout=1.0,  # a dropped stream's close must not hold a worker long
                proxy=None,
                legacy=True,  # the session, not a `with` block, owns the connection
            )
        except InvalidStatus as exc:
            raise RecognizerUnavailable(
                f"deepgram refused the stream: HTTP {exc.response.status_code}"
            ) from None
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise RecognizerUnavailable(f"deepgram unreachable: {type(exc).__name__}") from None

    def feed(self, pcm: npt.NDArray[np.int16]) -> list[Transcript]:
        # A stream the service closed may still hold the results it sent before closing:
        # they are returned first, and the close is raised once none is left.
        with contextlib.suppress(ConnectionClosed):
            self._socket.send(np.asarray(pcm, dtype="<i2").tobytes())
        return self._ready()

    def finish(self) -> list[Transcript]:
        heard: list[Transcript] = []
        deadline = time.monotonic() + self._settings.finish_timeout
        try:
            self._socket.send(json.dumps({"type": "CloseStream"}))
            # The server sends what is left, then closes the stream.
            while (left := deadline - time.monotonic()) > 0:
                result = final_transcript(self._socket.recv(timeout=left))
                if result is not None:
                    heard.append(result)
        except (ConnectionClosed, TimeoutError):
            pass
        finally:
            self._socket.close()
        return heard

    def close(self) -> None:
        """Drop the stream unfinished (the capture was cancelled)."""
        with contextlib.suppress(WebSocketException, OSError):
            self._socket.close()

    def _ready(self) -> list[Transcript]:
        heard: list[Transcript] = []
        while True:
            try:
                message = self._socket.recv(timeout=0)
            except TimeoutError:
                return heard
            except ConnectionClosed as exc:
                if heard:
                    return heard  # the close is raised with the next audio
                raise self._gone(exc) from None
            result = final_transcript(message)
            if result is not None:
                heard.append(result)

    @staticmethod
    def _gone(exc: ConnectionClosed) -> RecognizerUnavailable:
        code = exc.rcvd.code if exc.rcvd is not None else None
        return RecognizerUnavailable(f"deepgram closed the stream (code {code})")
