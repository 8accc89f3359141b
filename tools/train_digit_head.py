"""Train the digit head (`src/transact/voice/digit_head.npz`) from scratch.

The shipped weights were made by exactly these two steps (the seeds are the defaults):

    python tools/train_digit_head.py data /tmp/digits.npz --per-source 1000
    python tools/train_digit_head.py train src/transact/voice/digit_head.npz /tmp/digits.npz

`data --fast` makes quick talkers only (flite faster, words run together, sox's tempo
1.1-1.35x); `train` takes several data files.

Needs, besides the project: torch (`pip install -e '.[train]'`), the Debian packages
`flite`, `sox` and `asterisk-core-sounds-en-wav`, and the FSDD recordings in
../shared/data/fsdd. About 10 minutes for the data and 10-20 for training on two cores.

What it trains on, and what it keeps out (docs/voice.md says why):
* FSDD speakers george, lucas and nicolas (digits only). jackson is held out: the
  benchmark's held-out corpus is his.
* Asterisk's recorded English digits and number words (one professional speaker).
* flite's five voices (kal, kal16, awb, rms, slt), speed and pitch varied: digits, "oh",
  pairs ("twelve twenty eight"), "double"/"triple", hundreds.
* Not espeak-ng: the benchmark's synthetic corpus is espeak-ng, so it stays unseen.

Every utterance goes through a phone line as the benchmark's do (speed +-12 %, talker
level, white/brown noise and mains hum at 8-35 dB SNR on 60 % of them, mu-law), then
through Whisper tiny.en's encoder over a window of its own length, as the runtime does.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import tempfile
import time
import wave
from collections.abc import Iterator
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np

from transact.kernel.audio import read_wav, ulaw_round_trip
from transact.voice.bench import DIGIT_WORDS, TEEN_WORDS, TUNING_SPEAKERS, _resample, _trim
from transact.voice.digit_head import VOCABULARY
from transact.voice.numbers import TENS

SAMPLE_RATE = 8000
INDEX = {word: index for index, word in enumerate(VOCABULARY)}
TENS_WORDS = tuple(TENS)
FSDD = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd"
ASTERISK = Path("/usr/share/asterisk/sounds/en/digits")
TRAINING_SPEAKERS = TUNING_SPEAKERS  # the benchmark holds every other speaker out
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")
ASTERISK_FILES = (
    {word: str(n) for n, word in enumerate(DIGIT_WORDS)}
    | {word: str(10 + n) for n, word in enumerate(TEEN_WORDS)}
    | {word: str(20 + 10 * n) for n, word in enumerate(TENS_WORDS)}
    | {"hundred": "hundred", "oh": "oh"}
)

# --- what is said ------------------------------------------------------------------------


def digit_words(digits: str, rng: random.Random, *, repeats: bool) -> list[str]:
    """Digits one by one; zero as "zero" or "oh"; runs maybe as "double"/"triple"."""
    zero = rng.choice(["zero", "oh"])
    words: list[str] = []
    at = 0
    while at < len(digits):
        end = at
        while end < len(digits) and digits[end] == digits[at]:
            end += 1
        word = zero if digits[at] == "0" else DIGIT_WORDS[int(digits[at])]
        run = end - at
        if repeats and run in (2, 3) and rng.random() < 0.3:
            words += ["double" if run == 2 else "triple", word]
        else:
            words += [word] * run
        at = end
    return words


def pair_words(pair: str) -> list[str]:
    tens, units = int(pair[0]), int(pair[1])
    if tens == 0:
        return ["oh", "oh" if units == 0 else DIGIT_WORDS[units]]
    if tens == 1:
        return [TEEN_WORDS[units]]
    return [TENS_WORDS[tens - 2]] + ([] if units == 0 else [DIGIT_WORDS[units]])


def random_words(rng: random.Random, *, rich: bool) -> list[str]:
    """What a caller says in one breath: mostly a group of digits, sometimes (rich
    sources) an expiry in pairs or a number with "hundred"."""
    choice = rng.random()
    if rich and choice < 0.2:
        return [
            w
            for _ in range(rng.choice([1, 2, 2, 2, 3]))
            for w in pair_words(f"{rng.randint(0, 99):02d}")
        ]
    if rich and choice < 0.27:
        rest = pair_words(f"{rng.randint(1, 99):02d}") if rng.random() < 0.5 else []
        return [DIGIT_WORDS[rng.randint(1, 9)], "hundred", *rest]
    length = rng.choice([1, 2, 3, 3, 4, 4, 4, 4, 4, 5, 6, 8, 8, 12, 16])
    digits = "".join(rng.choice("0123456789") for _ in range(length))
    if length >= 3 and rng.random() < 0.35:  # runs, which Whisper miscounts
        at = rng.randrange(length)
        digits = (digits[:at] + rng.choice("0123456789") * rng.randint(2, 4) + digits[at:])[:length]
    return digit_words(digits, rng, repeats=rich)


# --- how it sounds -----------------------------------------------------------------------

_recordings: dict[Path, np.ndarray[Any, Any]] = {}


def recording(path: Path) -> np.ndarray[Any, Any]:
    if path not in _recordings:
        _recordings[path] = _trim(read_wav(path), 100.0).astype(np.float64)
    return _recordings[path]


def joined(
    parts: list[np.ndarray[Any, Any]], rng: random.Random, fast: bool
) -> np.ndarray[Any, Any]:
    """Words 0-120 ms apart (fluent) or 100-380 ms (careful): below the pause
    that ends an utterance."""
    low, high = (0.0, 0.12) if rng.random() < 0.6 else (0.1, 0.38)
    if fast:
        low, high = 0.0, 0.05
    out: list[np.ndarray[Any, Any]] = []
    for part in parts:
        out += [part, np.zeros(int(SAMPLE_RATE * rng.uniform(low, high)))]
    return np.concatenate(out[:-1])


def quicker(speech: np.ndarray[Any, Any], factor: float) -> np.ndarray[Any, Any]:
    """The same speech said `factor` times as fast, pitch kept (sox's tempo effect)."""
    command = ["sox", "-t", "raw", "-r", str(SAMPLE_RATE), "-e", "signed", "-b", "16", "-c", "1"]
    command += ["-", "-t", "raw", "-", "tempo", "-s", f"{factor:.3f}"]
    raw = np.clip(speech, -32768, 32767).astype("<i2").tobytes()
    done = subprocess.run(command, input=raw, capture_output=True, check=True, timeout=60)  # noqa: S603
    return np.frombuffer(done.stdout, dtype="<i2").astype(np.float64)


def flite(words: list[str], voice: str, rng: random.Random, fast: bool) -> np.ndarray[Any, Any]:
    text = " ".join(words)
    if rng.random() < 0.3:
        text = ", ".join(words)
    with tempfile.NamedTemporaryFile(suffix=".wav") as out:
        command = ["flite", "-voice", voice, "-o", out.name, "-t", text]
        stretch = rng.uniform(0.55, 0.85) if fast else rng.uniform(0.8, 1.3)
        command += ["--setf", f"duration_stretch={stretch:.2f}"]
        command += ["--setf", f"int_f0_target_mean={rng.uniform(90, 230):.0f}"]
        subprocess.run(command, check=True, capture_output=True, timeout=60)  # noqa: S603
        with wave.open(out.name) as source:
            rate = source.getframerate()
            data = np.frombuffer(source.readframes(source.getnframes()), dtype="<i2")
    resampled = _resample(data.astype(np.float64), rate, SAMPLE_RATE)
    return _trim(np.clip(resampled, -32768, 32767).astype(np.int16), 100.0).astype(np.float64)


def utterance(
    source: str, rng: random.Random, fast: bool
) -> tuple[np.ndarray[Any, Any], list[str]]:
    """What `source` says, and its words; `fast`: a quick talker (about 1.1-1.35x)."""
    if source in FLITE_VOICES:
        words = random_words(rng, rich=True)
        return flite(words, source, rng, fast), words
    speech, words = concatenated(source, rng, fast)
    return (quicker(speech, rng.uniform(1.1, 1.35)) if fast else speech), words


def concatenated(
    source: str, rng: random.Random, fast: bool
) -> tuple[np.ndarray[Any, Any], list[str]]:
    if source in (*TRAINING_SPEAKERS, "jackson"):
        words = ["zero" if w == "oh" else w for w in random_words(rng, rich=False)]
        paths = [FSDD / f"{DIGIT_WORDS.index(w)}_{source}_{rng.randrange(50)}.wav" for w in words]
        return joined([recording(p) for p in paths], rng, fast), words
    words = [w for w in random_words(rng, rich=True) if w in ASTERISK_FILES]
    return joined(
        [recording(ASTERISK / f"{ASTERISK_FILES[w]}.wav") for w in words], rng, fast
    ), words


def phone_line(speech: np.ndarray[Any, Any], rng: random.Random) -> np.ndarray[Any, Any]:
    factor = rng.uniform(0.88, 1.12)
    if abs(factor - 1) > 0.01:
        speech = _resample(speech, SAMPLE_RATE, int(SAMPLE_RATE * factor))
    active = speech[np.abs(speech) > 0.05 * np.max(np.abs(speech))]
    level = float(np.sqrt(np.mean(active**2))) if active.size else 1.0
    target = 32768 * 10 ** (rng.uniform(-32, -12) / 20)
    lead, trail = (
        np.zeros(int(SAMPLE_RATE * rng.uniform(*span))) for span in ((0.05, 0.25), (0.1, 0.25))
    )
    audio = np.concatenate([lead, speech * (target / level), trail])
    if rng.random() < 0.6:
        noise = np.random.default_rng(rng.randrange(2**32)).normal(size=audio.size)
        if rng.random() < 0.5:  # brown-ish rumble rather than hiss
            noise = np.cumsum(noise)
            noise -= np.convolve(noise, np.ones(200) / 200, "same")
        if rng.random() < 0.5:
            mains = rng.choice([50, 60])
            noise += (
                0.3
                * np.std(noise)
                * np.sin(2 * np.pi * mains * np.arange(audio.size) / SAMPLE_RATE)
            )
        snr_db = rng.uniform(8, 35)
        audio += noise * (target / 10 ** (snr_db / 20) / float(np.sqrt(np.mean(noise**2))))
    return ulaw_round_trip(np.clip(np.round(audio), -32768, 32767).astype(np.int16))


# --- data --------------------------------------------------------------------------------

Batch = tuple[list[np.ndarray[Any, Any]], list[list[int]], list[str]]


def encode_batch(job: tuple[str, int, int, bool]) -> Batch:
    os.environ["HF_HUB_OFFLINE"] = "1"
    from transact.voice.transcriber import _encoded, shared_model

    source, seed, count, fast = job
    rng = random.Random(seed)
    model = shared_model()
    frames, labels, sources = [], [], []
    for _ in range(count):
        speech, words = utterance(source, rng, fast)
        frames.append(_encoded(model, phone_line(speech, rng)).astype(np.float16))
        labels.append([INDEX[w] for w in words])
        sources.append(source)
    return frames, labels, sources


def make_data(out: Path, per_source: int, sources: tuple[str, ...], seed: int, fast: bool) -> None:
    jobs = []
    for source in sources:
        total = per_source * (2 if source in TRAINING_SPEAKERS else 1)
        for start in range(0, total, 100):
            jobs.append((source, seed, min(100, total - start), fast))
            seed += 1
    frames: list[np.ndarray[Any, Any]] = []
    labels: list[list[int]] = []
    names: list[str] = []
    with Pool(2) as pool:
        for done, (f, lab, s) in enumerate(pool.imap_unordered(encode_batch, jobs), 1):
            frames += f
            labels += lab
            names += s
            print(f"batch {done}/{len(jobs)}: {len(frames)} utterances", flush=True)
    np.savez(
        out,
        frames=np.array(frames, dtype=object),
        labels=np.array(labels, dtype=object),
        sources=np.array(names),
    )


# --- training ----------------------------------------------------------------------------


def batches(
    frames: list[np.ndarray[Any, Any]],
    labels: list[list[int]],
    chosen: list[int],
    size: int,
    train: bool,
) -> Iterator[tuple[Any, Any, Any, Any, list[int]]]:
    """Utterances of similar length together (little padding), in random batch order."""
    import torch

    jitter = 20 if train else 0
    ordered = sorted(chosen, key=lambda j: frames[j].shape[0] + random.random() * jitter)
    groups = [ordered[i : i + size] for i in range(0, len(ordered), size)]
    if train:
        random.shuffle(groups)
    for group in groups:
        longest = max(frames[j].shape[0] for j in group)
        x = np.zeros((len(group), longest, frames[group[0]].shape[1]), np.float32)
        for row, j in enumerate(group):
            f = frames[j].copy()
            if train:  # two short time masks, so no single frame is relied on
                for _ in range(2):
                    width = random.randint(0, 4)
                    start = random.randint(0, max(0, len(f) - width))
                    f[start : start + width] = 0
            x[row, : len(f)] = f
        targets = [torch.tensor(labels[j]) for j in group]
        yield (
            torch.from_numpy(x),
            torch.tensor([frames[j].shape[0] for j in group]),
            torch.cat(targets),
            torch.tensor([len(t) for t in targets]),
            group,
        )


def build_head(width: int, classes: int) -> Any:
    import torch
    from torch import nn

    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv1d(384, width, 3, padding=1)
            self.conv2 = nn.Conv1d(width, width, 3, padding=1)
            self.out = nn.Linear(width, classes)
            self.drop = nn.Dropout(0.15)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.relu(self.conv1(self.drop(x).transpose(1, 2)))
            y = torch.relu(self.conv2(self.drop(y)))
            return self.out(self.drop(y.transpose(1, 2)))  # type: ignore[no-any-return]

    return Head()


def exact_share(
    model: Any, frames: list[np.ndarray[Any, Any]], labels: list[list[int]], chosen: list[int]
) -> float:
    import torch

    from transact.voice.digit_head import best_path

    model.eval()
    right = 0
    with torch.no_grad():
        for x, lengths, _, _, group in batches(frames, labels, chosen, 64, train=False):
            log_probs = model(x).log_softmax(-1).numpy()
            for row, j in enumerate(group):
                heard = best_path(log_probs[row, : lengths[row]])
                right += heard == [VOCABULARY[i] for i in labels[j]]
    model.train()
    return right / max(1, len(chosen))


def train(data: list[Path], out: Path, epochs: int, width: int, seed: int) -> None:
    import torch
    from torch import nn

    random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(2)
    frames: list[np.ndarray[Any, Any]] = []
    labels: list[list[int]] = []
    for path in data:
        loaded = np.load(path, allow_pickle=True)
        frames += [f.astype(np.float32) for f in loaded["frames"]]
        labels += [list(lab) for lab in loaded["labels"]]
    order = list(range(len(frames)))
    random.Random(seed).shuffle(order)
    check, learn = order[: len(order) // 20], order[len(order) // 20 :]
    model = build_head(width, len(VOCABULARY))
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3, weight_decay=1e-2)
    steps = epochs * ((len(learn) + 31) // 32)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 2e-3, total_steps=steps)
    ctc = nn.CTCLoss(blank=0, zero_infinity=True)
    for epoch in range(epochs):
        started, total = time.time(), 0.0
        for x, lengths, targets, target_lengths, _ in batches(
            frames, labels, learn, 32, train=True
        ):
            log_probs = model(x).log_softmax(-1).transpose(0, 1)
            loss = ctc(log_probs, targets, lengths, target_lengths)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.item())
        share = exact_share(model, frames, labels, check)
        print(
            f"epoch {epoch}: loss {total:.1f}, exact on 5 % kept aside {share:.3f}",
            f"({time.time() - started:.0f} s)",
            flush=True,
        )
    weights = {name: value.numpy().astype(np.float16) for name, value in model.state_dict().items()}
    np.savez_compressed(out, **weights)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    data = commands.add_parser("data", help="make and encode the training utterances")
    data.add_argument("out", type=Path)
    data.add_argument("--per-source", type=int, default=700)
    data.add_argument(
        "--sources", default=",".join((*TRAINING_SPEAKERS, "asterisk", *FLITE_VOICES))
    )
    data.add_argument("--seed", type=int, default=1000)
    data.add_argument("--fast", action="store_true", help="quick talkers only")
    fit = commands.add_parser("train", help="train the head and write its weights")
    fit.add_argument("out", type=Path)
    fit.add_argument("data", type=Path, nargs="+")
    fit.add_argument("--epochs", type=int, default=10)
    fit.add_argument("--width", type=int, default=192)
    fit.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.command == "data":
        make_data(args.out, args.per_source, tuple(args.sources.split(",")), args.seed, args.fast)
    else:
        train(args.data, args.out, args.epochs, args.width, args.seed)


if __name__ == "__main__":
    main()
