"""`transact bench speech`: spoken card fields through the recognizer, as capture runs it.

Corpora (all 8 kHz, through one mu-law pass, clean and with line noise at 20 dB SNR):

* synthetic: espeak-ng, several English voices and speeds; card numbers in 4-digit
  groups with pauses and digit by digit, expiry as "twelve twenty eight" and as
  "one two two eight", 3 and 4 digit security codes;
* human: recordings of single digits by real people (FSDD) joined into card numbers
  (4-digit groups, 300-700 ms pauses), expiries and codes. The speakers settings were
  chosen on (and the digit head trained on) are one corpus; every other speaker in the
  folder (jackson here, or any voice added to it) is held out, reported apart and
  speaker by speaker;
* synthetic accented, where installed: English said by MBROLA voices built from German,
  French, Dutch, Polish, Swedish, Hungarian, Afrikaans, Greek and Romanian speakers
  (through espeak-ng), accents nothing was tuned or trained on. MBROLA's voices are
  Debian non-free and may not go into a product: they are for measuring only, never
  for training.

Every field is fed in 20 ms frames to its own session; the digits are what
`spoken_digits` reads from the final results. Printed as one JSON object.
"""

from __future__ import annotations

import io
import json
import random
import shutil
import subprocess
import sys
import time
import wave
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

from transact.kernel import isolated
from transact.kernel.audio import FRAME_SAMPLES, SAMPLE_RATE, read_wav, ulaw_round_trip
from transact.kernel.sensitive import luhn_valid
from transact.voice.domain import keys_from_speech
from transact.voice.numbers import spoken_digits
from transact.voice.transcriber import (
    Transcriber,
    Transcript,
    WhisperSettings,
    WhisperTranscriber,
)

Kind = Literal["card", "expiry", "code"]
Samples = npt.NDArray[np.int16]

# The FSDD speakers settings were chosen on and the digit head was trained on; any other
# speaker (jackson, never looked at while choosing, or a voice someone adds) is held out.
TUNING_SPEAKERS: Final = ("george", "lucas", "nicolas")
NOISE_SNR_DB: Final = 20.0
LEAD_IN_S: Final = 0.5
TRAIL_S: Final = 1.5  # silence after the field, so the pause end-points it
# (espeak-ng voice, words per minute)
VOICES: Final = (
    ("en", 165),
    ("en-us", 150),
    ("en-gb-x-rp", 185),
    ("en+f3", 160),
    ("en-us+m3", 200),
    ("en-gb-scotland", 140),
    ("en-029", 170),
    ("en-us+f4", 130),
)
# (espeak-ng MBROLA voice, words per minute): the synthetic accented corpus.
ACCENTED_VOICES: Final = (
    ("mb-de1-en", 150),
    ("mb-de2-en", 165),
    ("mb-de4-en", 140),
    ("mb-de6-en", 175),
    ("mb-fr1-en", 155),
    ("mb-fr4-en", 170),
    ("mb-nl2-en", 160),
    ("mb-pl1-en", 145),
    ("mb-sw1-en", 165),
    ("mb-sw2-en", 150),
    ("mb-hu1-en", 160),
    ("mb-af1-en", 170),
    ("mb-gr2-en", 150),
    ("mb-ro1-en", 160),
)
# Its own numbers and noise, so the other corpora are the same with or without it.
ACCENTED_SEED_OFFSET: Final = 1000
DIGIT_WORDS: Final = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
)
TEEN_WORDS: Final = (
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
)
TENS_WORDS: Final = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty")


@dataclass(frozen=True)
class Field:
    kind: Kind
    digits: str
    audio: Samples  # lead-in, speech, trailing silence
    speech_end: int  # sample index where the speech ends
    speaker: str


# The capture field each kind is, whose digit counts and plausibility (`domain`) the
# checked column uses, exactly as speech capture does.
CAPTURE_FIELDS: Final[dict[Kind, str]] = {"card": "pan", "expiry": "expiry", "code": "cvv"}


@dataclass
class Outcome:
    field: Field
    heard: str  # the best reading of every utterance
    checked: str  # per utterance, the reading capture takes (count, then plausibility)
    latency_s: float  # the decode counted in wall time (slower on a busy machine)
    latency_cpu_s: float  # the decode counted in CPU time (what a free core would take)
    cpu_s: float


@dataclass
class CorpusResult:
    outcomes: list[Outcome] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        outcomes = self.outcomes
        if not outcomes:
            return {"samples": 0}
        audio_s = sum(len(o.field.audio) for o in outcomes) / SAMPLE_RATE
        return {
            "samples": len(outcomes),
            "samples_by_field": {
                kind: _count(outcomes, kind) for kind in ("card", "expiry", "code")
            },
            "audio_seconds": round(audio_s, 1),
            **_accuracy(outcomes, lambda o: o.heard),
            "length_checked": _accuracy(outcomes, lambda o: o.checked),
            **_by_speaker(outcomes),
            "real_time_factor": round(sum(o.cpu_s for o in outcomes) / audio_s, 3),
            "latency_ms": _percentiles([o.latency_s for o in outcomes]),
            "latency_cpu_ms": _percentiles([o.latency_cpu_s for o in outcomes]),
        }


def _by_speaker(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """Each speaker's digits and whole cards, where a corpus has several: one voice the
    recognizer reads poorly should not hide in an average."""
    speakers = sorted({o.field.speaker for o in outcomes})
    if len(speakers) < 2:
        return {}
    by_speaker = {}
    for speaker in speakers:
        theirs = [o for o in outcomes if o.field.speaker == speaker]
        heard, checked = (
            _accuracy(theirs, lambda o: o.heard),
            _accuracy(theirs, lambda o: o.checked),
        )
        by_speaker[speaker] = {
            "digit_accuracy": heard["digit_accuracy"],
            "checked_digit_accuracy": checked["digit_accuracy"],
            "card_accuracy": heard["field_accuracy"]["card"],
            "checked_card_accuracy": checked["field_accuracy"]["card"],
        }
    return {"by_speaker": by_speaker}


def _percentiles(seconds: Sequence[float]) -> dict[str, int]:
    return {
        "p50": round(1000 * float(np.percentile(seconds, 50))),
        "p95": round(1000 * float(np.percentile(seconds, 95))),
    }


def _accuracy(outcomes: Sequence[Outcome], heard: Callable[[Outcome], str]) -> dict[str, Any]:
    errors = sum(_edit_distance(heard(o), o.field.digits) for o in outcomes)
    length = sum(len(o.field.digits) for o in outcomes)
    wrong_cards = [o for o in outcomes if o.field.kind == "card" and heard(o) != o.field.digits]
    return {
        "digit_accuracy": round(1 - errors / length, 4),
        "field_accuracy": {
            kind: _exact(outcomes, kind, heard) for kind in ("card", "expiry", "code")
        },
        "wrong_cards": len(wrong_cards),
        # Wrong card numbers capture refuses anyway (not 16 digits, or Luhn fails); the
        # rest only the caller's confirmation of the read-back can stop.
        "wrong_cards_caught_by_length_or_luhn": sum(
            1 for o in wrong_cards if len(heard(o)) != 16 or not luhn_valid(heard(o))
        ),
    }


def _count(outcomes: Sequence[Outcome], kind: str) -> int:
    return sum(1 for o in outcomes if o.field.kind == kind)


def _exact(outcomes: Sequence[Outcome], kind: str, heard: Callable[[Outcome], str]) -> float | None:
    chosen = [o for o in outcomes if o.field.kind == kind]
    if not chosen:
        return None
    return round(sum(1 for o in chosen if heard(o) == o.field.digits) / len(chosen), 4)


def _edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b))
            )
        previous = current
    return previous[-1]


# --- what is said -----------------------------------------------------------------------


def card_number(rng: random.Random) -> str:
    """A Luhn-valid 16-digit number; one in four has a run of repeated digits, which
    real numbers (and test cards) often do and recognizers miscount."""
    prefix = rng.choice(["4", "51", "53", "6011", "4111"])
    body = prefix + "".join(rng.choice("0123456789") for _ in range(15 - len(prefix)))
    if rng.random() < 0.25:
        at = rng.randrange(len(prefix), 12)
        body = body[:at] + rng.choice("0123456789") * 3 + body[at + 3 :]
        body = body[:15]
    check = next(str(d) for d in range(10) if luhn_valid(body + str(d)))
    return body + check


def expiry(rng: random.Random) -> str:
    return f"{rng.randint(1, 12):02d}{rng.randint(25, 35):02d}"


def security_code(rng: random.Random) -> str:
    return "".join(rng.choice("0123456789") for _ in range(rng.choice([3, 3, 4])))


def words_one_by_one(digits: str, rng: random.Random) -> str:
    """Digit by digit, zero said as "zero" or "oh" like people do."""
    zero = rng.choice(["zero", "oh"])
    return " ".join(zero if d == "0" else DIGIT_WORDS[int(d)] for d in digits)


def words_in_pairs(pair: str) -> str:
    """A two-digit pair the way expiries are said: "twelve", "oh five", "twenty eight"."""
    tens, units = int(pair[0]), int(pair[1])
    if tens == 0:
        return f"oh {DIGIT_WORDS[units]}"
    if tens == 1:
        return TEEN_WORDS[units]
    return TENS_WORDS[tens] + ("" if units == 0 else f" {DIGIT_WORDS[units]}")


# --- synthetic voices -------------------------------------------------------------------


def espeak(text: str, voice: str, speed: int) -> Samples:
    """espeak-ng speech resampled to 8 kHz (band-limited, by FFT)."""
    tool = shutil.which("espeak-ng")
    if tool is None:
        raise FileNotFoundError("espeak-ng is not installed")
    command = [tool, "-v", voice, "-s", str(speed), "--stdout", text]
    raw = subprocess.run(command, capture_output=True, check=True, timeout=60).stdout  # noqa: S603
    with wave.open(io.BytesIO(raw)) as source:
        rate = source.getframerate()
        data = np.frombuffer(source.readframes(source.getnframes()), dtype="<i2")
    return _to_int16(_resample(data.astype(np.float64), rate, SAMPLE_RATE))


def _resample(data: npt.NDArray[np.float64], rate_in: int, rate_out: int) -> npt.NDArray[Any]:
    length = round(len(data) * rate_out / rate_in)
    spectrum = np.fft.rfft(data)
    kept = np.zeros(length // 2 + 1, dtype=complex)
    shared = min(len(kept), len(spectrum))
    kept[:shared] = spectrum[:shared]
    return np.fft.irfft(kept, length) * (length / max(1, len(data)))


def _trim(samples: Samples, threshold: float = 200.0) -> Samples:
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > threshold)
    return samples[loud[0] : loud[-1] + 1] if loud.size else samples


def synthetic_fields(rng: random.Random, voices: Sequence[tuple[str, int]]) -> list[Field]:
    fields: list[Field] = []
    for voice, speed in voices:

        def say(text: str, voice: str = voice, speed: int = speed) -> Samples:
            return _trim(espeak(text, voice, speed))

        number = card_number(rng)
        groups = [say(words_one_by_one(number[i : i + 4], rng)) for i in range(0, 16, 4)]
        fields.append(_field("card", number, _with_pauses(groups, rng), voice))
        number = card_number(rng)
        fields.append(_field("card", number, [say(words_one_by_one(number, rng))], voice))
        date = expiry(rng)
        spoken = f"{words_in_pairs(date[:2])} {words_in_pairs(date[2:])}"
        fields.append(_field("expiry", date, [say(spoken)], voice))
        date = expiry(rng)
        fields.append(_field("expiry", date, [say(words_one_by_one(date, rng))], voice))
        code = security_code(rng)
        fields.append(_field("code", code, [say(words_one_by_one(code, rng))], voice))
    return fields


def installed_voices(voices: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    """Those of `voices` espeak-ng can speak here (an MBROLA voice needs its package)."""
    found = []
    for voice, speed in voices:
        try:
            espeak("one", voice, speed)
        except (OSError, subprocess.SubprocessError, wave.Error, EOFError):
            continue
        found.append((voice, speed))
    return found


# --- human voices (FSDD) ----------------------------------------------------------------


class Recordings:
    """FSDD recordings by speaker and digit, read once."""

    def __init__(self, folder: Path) -> None:
        self._by_key: dict[tuple[str, str], list[Path]] = {}
        for path in sorted(folder.glob("*.wav")):
            digit, speaker, _ = path.stem.split("_", 2)
            self._by_key.setdefault((speaker, digit), []).append(path)
        self._cache: dict[Path, Samples] = {}

    @property
    def speakers(self) -> list[str]:
        return sorted({speaker for speaker, _ in self._by_key})

    def say(self, digits: str, speaker: str, rng: random.Random) -> Samples:
        """One group said without pausing: recordings 20-120 ms apart (they are trimmed
        to the word, so this is the gap between words in fluent speech)."""
        parts: list[Samples] = []
        for digit in digits:
            path = rng.choice(self._by_key[(speaker, digit)])
            if path not in self._cache:
                self._cache[path] = _trim(read_wav(path), 100.0)
            parts.extend([self._cache[path], _silence(rng.uniform(0.02, 0.12))])
        return np.concatenate(parts[:-1])


def human_fields(
    rng: random.Random, recordings: Recordings, speakers: Iterable[str], cards: int
) -> list[Field]:
    fields: list[Field] = []
    for speaker in speakers:
        for _ in range(cards):
            number = card_number(rng)
            groups = [recordings.say(number[i : i + 4], speaker, rng) for i in range(0, 16, 4)]
            fields.append(_field("card", number, _with_pauses(groups, rng), speaker))
        for _ in range(max(1, cards // 2)):
            date = expiry(rng)
            fields.append(_field("expiry", date, [recordings.say(date, speaker, rng)], speaker))
            code = security_code(rng)
            fields.append(_field("code", code, [recordings.say(code, speaker, rng)], speaker))
    return fields


# --- signal helpers ---------------------------------------------------------------------


def _silence(seconds: float) -> Samples:
    return np.zeros(round(seconds * SAMPLE_RATE), dtype=np.int16)


def _with_pauses(groups: Sequence[Samples], rng: random.Random) -> list[Samples]:
    """Groups with the natural 300-700 ms pause a caller leaves between them."""
    parts: list[Samples] = []
    for group in groups:
        parts.extend([group, _silence(rng.uniform(0.3, 0.7))])
    return parts[:-1]


def _field(kind: Kind, digits: str, parts: Sequence[Samples], speaker: str) -> Field:
    speech = np.concatenate(list(parts))
    lead, trail = _silence(LEAD_IN_S), _silence(TRAIL_S)
    audio = np.concatenate([lead, speech, trail])
    return Field(kind, digits, audio, len(lead) + len(speech), speaker)


def _to_int16(signal: npt.NDArray[Any]) -> Samples:
    return np.clip(np.round(signal), -32768, 32767).astype(np.int16)


def telephone(field: Field, rng: random.Random, snr_db: float | None) -> Field:
    """The field at a random talker level, with line noise at `snr_db` (None: clean),
    through one mu-law pass."""
    audio = field.audio.astype(np.float64)
    speech = audio[round(LEAD_IN_S * SAMPLE_RATE) : field.speech_end]
    active = speech[np.abs(speech) > 0.05 * np.max(np.abs(speech))]
    level = float(np.sqrt(np.mean(active**2))) if active.size else 1.0
    target = 32768 * 10 ** (rng.uniform(-28, -16) / 20)  # talkers and lines vary
    audio *= target / level
    if snr_db is not None:
        noise = np.random.default_rng(rng.randrange(2**32)).normal(size=audio.size)
        hum = 0.3 * np.sin(2 * np.pi * 60 * np.arange(audio.size) / SAMPLE_RATE)
        line = noise + hum
        audio += line * (target / 10 ** (snr_db / 20) / float(np.sqrt(np.mean(line**2))))
    return Field(
        field.kind,
        field.digits,
        ulaw_round_trip(_to_int16(audio)),
        field.speech_end,
        field.speaker,
    )


# --- running ----------------------------------------------------------------------------


def run_field(transcriber: Transcriber, field: Field) -> Outcome:
    """Feed the field in 20 ms frames to a fresh session, like capture does.

    Latency: audio time from the end of speech to the frame that produced the last
    final result, plus the time that frame's `feed` took (the decode), in wall time
    and in CPU time."""
    session = transcriber.open(mode="digits")
    heard: list[str] = []
    checked: list[str] = []
    capture_field = CAPTURE_FIELDS[field.kind]

    def as_capture_takes(result: Transcript) -> str:
        return keys_from_speech(result.text, result.alternatives, capture_field).strip("*#")

    done_at = float(len(field.audio)) / SAMPLE_RATE
    cpu = 0.0
    last_final_at = last_final_cpu_at = None
    for start in range(0, len(field.audio), FRAME_SAMPLES):
        wall, cpu_before = time.perf_counter(), time.process_time()
        results = session.feed(field.audio[start : start + FRAME_SAMPLES])
        used = time.process_time() - cpu_before
        cpu += used
        finals = [r for r in results if r.final]
        if finals:
            heard.extend(spoken_digits(r.text) for r in finals)
            checked.extend(as_capture_takes(r) for r in finals)
            heard_at = (start + FRAME_SAMPLES) / SAMPLE_RATE
            last_final_at = heard_at + time.perf_counter() - wall
            last_final_cpu_at = heard_at + used
    wall, cpu_before = time.perf_counter(), time.process_time()
    finals = [r for r in session.finish() if r.final]
    used = time.process_time() - cpu_before
    cpu += used
    if finals:
        heard.extend(spoken_digits(r.text) for r in finals)
        checked.extend(as_capture_takes(r) for r in finals)
        last_final_at = done_at + time.perf_counter() - wall
        last_final_cpu_at = done_at + used
    end_of_speech = field.speech_end / SAMPLE_RATE
    return Outcome(
        field,
        "".join(heard),
        "".join(checked),
        (last_final_at if last_final_at is not None else done_at) - end_of_speech,
        (last_final_cpu_at if last_final_cpu_at is not None else done_at) - end_of_speech,
        cpu,
    )


def _corpus(
    transcriber: Transcriber, fields: Sequence[Field], rng: random.Random, snr: float | None
) -> CorpusResult:
    result = CorpusResult()
    for field_ in fields:
        result.outcomes.append(run_field(transcriber, telephone(field_, rng, snr)))
    return result


@dataclass(frozen=True)
class Options:
    quick: bool = False
    seed: int = 1
    fsdd: str = "../shared/data/fsdd"
    accented: bool = True  # the MBROLA corpus, where its voices are installed
    cards: int = 10  # card numbers per tuning speaker (and half as many expiries, codes)
    # per held-out speaker: the numbers that judge the result get the larger sample
    held_out_cards: int = 30


def split_speakers(found: Iterable[str]) -> tuple[list[str], list[str]]:
    """The speakers found, as (tuning, held out): held out is everyone the settings and
    the digit head never heard."""
    found = sorted(set(found))
    return [s for s in found if s in TUNING_SPEAKERS], [
        s for s in found if s not in TUNING_SPEAKERS
    ]


def bench_speech(options: Options, settings: WhisperSettings | None = None) -> dict[str, Any]:
    transcriber = WhisperTranscriber(settings)
    rng = random.Random(options.seed)
    started = time.process_time()
    transcriber.transcribe(np.zeros(SAMPLE_RATE, dtype=np.int16), mode="digits")  # load
    load_cpu_s = time.process_time() - started
    report: dict[str, Any] = {
        "engine": transcriber.name,
        "settings": asdict(transcriber.settings),
        "seed": options.seed,
        "quick": options.quick,
        "noise_snr_db": NOISE_SNR_DB,
        "model_load_cpu_s": round(load_cpu_s, 2),
        "corpora": {},
        "notes": [],
    }
    corpora: dict[str, list[Field]] = {}
    voices = VOICES[:1] if options.quick else VOICES
    try:
        corpora["synthetic"] = synthetic_fields(rng, voices)
    except FileNotFoundError as exc:
        report["notes"].append(f"synthetic corpus skipped: {exc}")
    folder = Path(options.fsdd)
    recordings = Recordings(folder) if folder.is_dir() else None
    if recordings is None or not recordings.speakers:
        report["notes"].append(f"human corpus skipped: no FSDD recordings in {folder}")
    else:
        tuning, held_out = split_speakers(recordings.speakers)
        report["tuning_speakers"], report["held_out_speakers"] = tuning, held_out
        if options.quick:
            tuning, held_out = tuning[:1], held_out[:1]
        for name, speakers, cards in (
            ("human", tuning, options.cards),
            ("human_held_out", held_out, options.held_out_cards),
        ):
            if speakers:
                corpora[name] = human_fields(
                    rng, recordings, speakers, 1 if options.quick else cards
                )
    own_rng: dict[str, random.Random] = {}
    accented = installed_voices(ACCENTED_VOICES) if options.accented and not options.quick else []
    if accented:
        own_rng["synthetic_accented"] = random.Random(options.seed + ACCENTED_SEED_OFFSET)
        corpora["synthetic_accented"] = synthetic_fields(own_rng["synthetic_accented"], accented)
    elif options.accented and not options.quick:
        report["notes"].append(
            "accented corpus skipped: no MBROLA voices (Debian non-free: mbrola-de1 ...)"
        )
    all_outcomes: list[Outcome] = []
    for name, fields in corpora.items():
        for condition, snr in (("clean", None), ("noisy", NOISE_SNR_DB)):
            result = _corpus(transcriber, fields, own_rng.get(name, rng), snr)
            all_outcomes.extend(result.outcomes)
            report["corpora"][f"{name}_{condition}"] = result.summary()
    report["overall"] = CorpusResult(all_outcomes).summary()
    return report


def run_isolated(options: Options) -> dict[str, Any]:
    """`bench_speech` in a fresh interpreter on one core (`kernel.isolated`)."""
    result: dict[str, Any] = json.loads(
        isolated.run_isolated("transact.voice.bench", json.dumps(asdict(options)))
    )
    return result


if __name__ == "__main__":
    isolated.pin_to_one_core()
    print(json.dumps(bench_speech(Options(**json.loads(sys.argv[1])))))
