"""A recognizer for tests: it "hears" the words a test scripts, one utterance each time
the audio it is fed pauses after sound, like a real end-pointing session does; and
audio to feed it: bursts of sound ("words") separated by pauses."""

from __future__ import annotations

import base64
import threading
from collections import deque
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from transact.contracts.voice import VoiceAudio, pack_chunk, voice_audio_context
from transact.kernel.audio import FRAME_SAMPLES, SAMPLE_RATE, ulaw_encode
from transact.kernel.vault import Vault
from transact.voice.transcriber import Transcript

SPEECH_RMS = 300.0  # a 20 ms frame louder than this is someone speaking
PAUSE_FRAMES = 15  # 300 ms of quiet after speech ends an utterance
CHUNK_SAMPLES = SAMPLE_RATE // 5  # 200 ms, as telephony sends


class ScriptedSession:
    def __init__(self, owner: ScriptedTranscriber, mode: str) -> None:
        self.owner, self.mode = owner, mode
        self.speaking = False
        self.quiet = 0
        self.pending = np.zeros(0, dtype=np.int16)
        self.closed = False

    def feed(self, pcm: npt.NDArray[np.int16]) -> list[Transcript]:
        self.owner.fed += len(pcm)
        audio = np.concatenate([self.pending, pcm])
        heard: list[Transcript] = []
        whole = len(audio) // FRAME_SAMPLES * FRAME_SAMPLES
        for start in range(0, whole, FRAME_SAMPLES):
            frame = audio[start : start + FRAME_SAMPLES].astype(np.float64)
            loud = float(np.sqrt(np.mean(frame**2))) > SPEECH_RMS
            if loud:
                self.speaking, self.quiet = True, 0
            elif self.speaking:
                self.quiet += 1
                if self.quiet >= PAUSE_FRAMES:
                    heard.append(self._utterance())
        self.pending = audio[whole:]
        return heard

    def finish(self) -> list[Transcript]:
        return [self._utterance()] if self.speaking else []

    def close(self) -> None:
        self.closed = True

    def _utterance(self) -> Transcript:
        self.speaking, self.quiet = False, 0
        return Transcript(self.owner.next_words(self.mode), final=True)


class ScriptedTranscriber:
    """Each utterance, in order, is the next text of `script` (thread-safe: sessions are
    fed in worker threads). `modes` records the mode of every utterance heard."""

    name = "scripted"

    def __init__(self, script: Iterable[str] = ()) -> None:
        self.script: deque[str] = deque(script)
        self.modes: list[str] = []
        self.sessions = 0
        self.opened: list[ScriptedSession] = []
        self.fed = 0
        self._lock = threading.Lock()

    def say(self, *texts: str) -> None:
        with self._lock:
            self.script.extend(texts)

    def next_words(self, mode: str) -> str:
        with self._lock:
            self.modes.append(mode)
            return self.script.popleft() if self.script else ""

    def open(self, *, mode: str) -> ScriptedSession:
        session = ScriptedSession(self, mode)
        with self._lock:
            self.sessions += 1
            self.opened.append(session)
        return session


def spoken(
    utterances: int, *, word_ms: int = 400, pause_ms: int = 600, seed: int = 7
) -> npt.NDArray[np.int16]:
    """`utterances` bursts of noise at speech level, each followed by a pause."""
    rng = np.random.default_rng(seed)
    parts = [np.zeros(SAMPLE_RATE // 10, dtype=np.int16)]
    for _ in range(utterances):
        burst = rng.normal(0, 3000, SAMPLE_RATE * word_ms // 1000)
        parts += [np.clip(burst, -32768, 32767).astype(np.int16)]
        parts += [np.zeros(SAMPLE_RATE * pause_ms // 1000, dtype=np.int16)]
    return np.concatenate(parts)


def chunks(
    vault: Vault,
    tenant_id: str,
    call_id: str,
    capture_id: str,
    audio: npt.NDArray[np.int16],
    *,
    first_seq: int = 1,
    keys: dict[int, str] | None = None,
) -> list[VoiceAudio]:
    """The audio as telephony sends it to voice: sealed 200 ms chunks, numbered; `keys`
    puts keys pressed into the chunk of that index."""
    out: list[VoiceAudio] = []
    for index, start in enumerate(range(0, len(audio), CHUNK_SAMPLES)):
        seq = first_seq + index
        plain = pack_chunk(
            (keys or {}).get(index, ""), ulaw_encode(audio[start : start + CHUNK_SAMPLES])
        )
        sealed = vault.seal(tenant_id, plain, voice_audio_context(call_id, seq))
        out.append(
            VoiceAudio(
                tenant_id=tenant_id,
                call_id=call_id,
                seq=seq,
                sealed=base64.b64encode(sealed).decode(),
                capture_id=capture_id,
            )
        )
    return out
