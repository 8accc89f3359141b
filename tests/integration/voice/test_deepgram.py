"""The Deepgram adapter against a real WebSocket server that speaks Deepgram's documented
live audio protocol (`deepgram_server.py`): how the stream is opened, what goes over it,
which results come back, and clear errors when the service refuses or goes away."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator

import numpy as np
import pytest

from tests.integration.voice.deepgram_server import KEY, ListenServer, listen_server
from transact.kernel.errors import ConfigError
from transact.kernel.settings import load_settings
from transact.voice import engine_factory
from transact.voice.deepgram import (
    DeepgramSession,
    DeepgramSettings,
    DeepgramTranscriber,
    RecognizerUnavailable,
)
from transact.voice.domain import keys_from_speech
from transact.voice.transcriber import Transcript

FRAME = 160  # 20 ms at 8 kHz, as voice feeds a session
MASTER_KEY = base64.b64encode(b"d" * 32).decode()
# The deployment's defaults (TRANSACT_DEEPGRAM_URL and _MODEL), where DeepgramSettings
# gets its URL and model from.
DEFAULTS = load_settings(master_key=MASTER_KEY)
GROUPS = [["4111", "4111 1"], ["one one one one"], ["1111"], ["1111"]]


@pytest.fixture
def server() -> Iterator[ListenServer]:
    with listen_server(ListenServer(script=[list(g) for g in GROUPS])) as running:
        yield running


def speech(seconds: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-3000, 3000, int(8000 * seconds), np.int16)


def feed_until_heard(session: DeepgramSession, audio: np.ndarray) -> list[Transcript]:
    """Feed in 20 ms frames as voice does, then silence until a final result comes (the
    server answers on its own thread: `feed` returns what has arrived, never waits)."""
    heard: list[Transcript] = []
    for start in range(0, len(audio), FRAME):
        heard += session.feed(audio[start : start + FRAME])
    deadline = time.monotonic() + 5
    while not heard and time.monotonic() < deadline:
        heard += session.feed(np.zeros(FRAME, np.int16))
        time.sleep(0.02)
    return heard


def transcriber(url: str) -> DeepgramTranscriber:
    return DeepgramTranscriber(settings(url))


def settings(url: str = DEFAULTS.deepgram_url, api_key: str = KEY) -> DeepgramSettings:
    return DeepgramSettings(api_key=api_key, url=url, model=DEFAULTS.deepgram_model)


def test_a_digits_stream_is_opened_with_the_key_the_format_and_numerals(
    server: ListenServer,
) -> None:
    session = transcriber(server.url).open(mode="digits")
    session.finish()
    [query] = server.queries
    assert query["encoding"] == "linear16"
    assert query["sample_rate"] == "8000"
    assert query["channels"] == "1"
    assert query["model"] == "nova-2-phonecall"
    assert query["endpointing"] == "800"
    assert query["numerals"] == "true"
    assert query["interim_results"] == "false"
    transcriber(server.url).open(mode="free").finish()
    assert server.queries[1]["numerals"] == "false"
    assert server.queries[1]["punctuate"] == "true"


def test_final_results_come_back_with_their_alternatives_and_the_audio_as_sent(
    server: ListenServer,
) -> None:
    session = transcriber(server.url).open(mode="digits")
    audio = speech(1.0)
    heard = feed_until_heard(session, audio)
    # The interim result the server sent first is not a result.
    assert heard == [Transcript("4111", final=True, alternatives=("4111 1",))]
    assert keys_from_speech(heard[0].text, heard[0].alternatives, "pan") == "4111"
    # CloseStream: the server sends what is left of the script, then closes.
    rest = session.finish()
    assert [t.text for t in rest] == ["one one one one", "1111", "1111"]
    assert all(t.final for t in rest)
    assert server.control == [{"type": "CloseStream"}]
    # The audio arrived as 16-bit little-endian samples, frame for frame.
    sent = np.frombuffer(bytes(server.audio), dtype="<i2")
    assert np.array_equal(sent[: len(audio)], audio)
    assert not sent[len(audio) :].any()


def test_a_refused_key_is_a_clear_error_that_does_not_show_the_key(server: ListenServer) -> None:
    wrong = DeepgramTranscriber(settings(server.url, api_key="not-the-key"))
    with pytest.raises(RecognizerUnavailable, match="HTTP 401") as refused:
        wrong.open(mode="digits")
    assert "not-the-key" not in str(refused.value)


def test_a_stream_the_service_drops_is_a_clear_error_after_what_it_sent() -> None:
    """The result sent just before the close is returned; the close is raised after it."""
    failing = ListenServer(script=[["4111"], ["1111"]], close_code=1011)
    with listen_server(failing):
        session = transcriber(failing.url).open(mode="digits")
        heard: list[Transcript] = []
        with pytest.raises(RecognizerUnavailable, match="code 1011"):
            for _ in range(200):
                heard += feed_until_heard(session, speech(1.0))
                time.sleep(0.02)
        assert [t.text for t in heard] == ["4111"]


def test_nothing_listening_is_a_clear_error_and_is_not_hammered() -> None:
    down = DeepgramTranscriber(settings("ws://127.0.0.1:9/v1/listen"), retry_after=0.3)
    with pytest.raises(RecognizerUnavailable, match="unreachable"):
        down.open(mode="digits")
    # Voice asks again with the next chunk; within the pause nothing is tried.
    with pytest.raises(RecognizerUnavailable, match="not retried yet"):
        down.open(mode="digits")
    time.sleep(0.35)
    with pytest.raises(RecognizerUnavailable, match="unreachable"):
        down.open(mode="digits")


def test_card_audio_goes_over_tls_and_with_a_key() -> None:
    with pytest.raises(ConfigError, match="wss://"):
        settings("ws://api.deepgram.com/v1/listen")
    with pytest.raises(ConfigError, match="TRANSACT_DEEPGRAM_API_KEY"):
        settings(api_key="")
    settings()  # the default URL is wss://


def test_the_engine_is_chosen_and_checked_from_the_settings(server: ListenServer) -> None:
    missing = load_settings(master_key=MASTER_KEY, voice_engine="deepgram")
    with pytest.raises(ConfigError, match="TRANSACT_DEEPGRAM_API_KEY"):
        engine_factory("deepgram", missing)
    chosen = load_settings(
        master_key=MASTER_KEY,
        voice_engine="deepgram",
        deepgram_api_key=KEY,
        deepgram_url=server.url,
    )
    factory = engine_factory("deepgram", chosen)
    assert factory is not None
    made = factory()
    assert made.name == "deepgram"
    made.open(mode="digits").finish()
    assert server.queries, "the factory's recognizer streams to the configured URL"
