"""The digit head: number words read straight off Whisper's encoder, frame by frame.

Whisper tiny.en's decoder miscounts runs of one digit ("one one one one" comes out with
three or five), and drops or adds words on noisy lines. The encoder's output is good; the
decoder's language model is the weak part. The head is a small network trained with CTC
(connectionist temporal classification) on top of the frozen encoder: two 1-D
convolutions over the encoder frames (20 ms each) and a linear layer giving, for every
frame, the probability of each number word or of none ("blank"). A word said twice is
two peaks with a blank between, so runs are counted as said.

The head does two things for a digits-mode utterance (`WhisperTranscriber.readings`):
its best path is one more reading (when it is all digit words), and every reading is
ranked by how likely the head finds it, so capture's choice among them is made by the
head. The weights (`digit_head.npz`, float16, 0.6 MB) ship inside the package and were
trained by `tools/train_digit_head.py`; see docs/voice.md for what it was trained on and
how it was measured.

Nothing here logs what it reads: readings are card digits.
"""

from __future__ import annotations

import threading
from itertools import groupby
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from transact.voice.numbers import TEENS, TENS, UNITS

# The classes, in the order of the head's outputs; index 0 is CTC's blank.
VOCABULARY: Final = (
    "",
    "zero",
    "oh",
    *UNITS.keys(),
    *TEENS.keys(),
    *TENS.keys(),
    "hundred",
    "double",
    "triple",
)
_INDEX: Final = {word: index for index, word in enumerate(VOCABULARY)}
WEIGHTS: Final = Path(__file__).with_name("digit_head.npz")

Floats = npt.NDArray[np.float32]


class DigitHead:
    """The trained head: encoder frames (T x 384) to per-frame log-probabilities."""

    def __init__(self, weights: Path = WEIGHTS) -> None:
        with np.load(weights) as data:
            self._layers = [
                (
                    data[f"conv{n}.weight"].astype(np.float32),
                    data[f"conv{n}.bias"].astype(np.float32),
                )
                for n in (1, 2)
            ]
            self._out = (data["out.weight"].astype(np.float32), data["out.bias"].astype(np.float32))
        if self._out[0].shape[0] != len(VOCABULARY):
            raise ValueError("digit head weights do not match the vocabulary")

    def log_probs(self, frames: Floats) -> Floats:
        hidden = frames.astype(np.float32)
        for weight, bias in self._layers:
            hidden = np.maximum(_conv1d(hidden, weight, bias), 0.0)
        weight, bias = self._out
        logits = hidden @ weight.T + bias
        shifted = logits - logits.max(axis=1, keepdims=True)
        result: Floats = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return result


def _conv1d(frames: Floats, weight: Floats, bias: Floats) -> Floats:
    """A 'same' 1-D convolution over time: frames T x C_in, weight C_out x C_in x K."""
    width = weight.shape[2]
    pad = width // 2
    padded = np.pad(frames, ((pad, pad), (0, 0)))
    out: Floats = np.tile(bias, (len(frames), 1))
    for k in range(width):
        out += padded[k : k + len(frames)] @ weight[:, :, k].T
    return out


def best_path(log_probs: Floats) -> list[str]:
    """The head's own reading: the likeliest class per frame, repeats merged, blanks gone."""
    words: list[str] = []
    previous = 0
    for index in log_probs.argmax(axis=1).tolist():
        if index != previous and index != 0:
            words.append(VOCABULARY[index])
        previous = index
    return words


# The head's own reading is offered only when it is all digit words: it was trained on
# few voices saying "twenty" or "fifteen", and there Whisper's decoder reads better.
_DIGIT_WORDS: Final = frozenset({"zero", "oh", *UNITS.keys(), "double", "triple"})


# How much likelier (in nats) the head's own reading must be than the readings it ranks
# when none of them has its words, runs aside. On voices it never heard, a word of its
# own that Whisper did not hear is wrong more often than not (chosen on a head trained
# without nicolas, on nicolas, and on espeak voices the benchmark does not use; see
# docs/voice.md). Runs are exempt: counting them is what Whisper's decoder gets wrong.
OWN_READING_MARGIN: Final = 4.0


def rank(
    log_probs: Floats, readings: list[str], own_margin: float = OWN_READING_MARGIN
) -> list[str]:
    """The readings, with the head's own if it is all digit words, likeliest under the
    head first (its own is held back by `own_margin` when no reading has its words,
    runs aside); readings with a word the head lacks keep their order after the rest."""
    own = best_path(log_probs)
    offered = " ".join(own) if own and set(own) <= _DIGIT_WORDS else None
    candidates = list(dict.fromkeys([*readings, *([offered] if offered else [])]))
    words_of = {text: head_words(text) for text in candidates}
    scores = {
        text: log_likelihood(log_probs, words) if words else float("-inf")
        for text, words in words_of.items()
    }
    heard_by_whisper = [_without_runs(words) for t in readings if (words := words_of[t])]
    if offered is not None and _without_runs(own) not in heard_by_whisper:
        scores[offered] -= own_margin
    return sorted(candidates, key=lambda text: -scores[text])


def _without_runs(words: list[str]) -> list[str]:
    """The words with each run of one word said once ("five five one" -> "five one")."""
    return [word for word, _ in groupby(words)]


def head_words(text: str) -> list[str] | None:
    """A reading's words in the head's vocabulary (None: it has a word the head lacks)."""
    words = [word.strip(",.").lower() for word in text.replace("-", " ").split()]
    words = [word for word in words if word]
    if not words or any(word not in _INDEX for word in words):
        return None
    return words


def log_likelihood(log_probs: Floats, words: list[str]) -> float:
    """log P(words | audio) under the head: CTC's forward algorithm over all alignments."""
    labels = [_INDEX[word] for word in words]
    extended = [0]
    for label in labels:
        extended += [label, 0]
    frames, states = len(log_probs), len(extended)
    if frames == 0 or states > 2 * frames + 1:
        return float("-inf")
    target = np.array(extended)
    # A state may be skipped into from two back when it is a word unlike the one there.
    skip = np.zeros(states, dtype=bool)
    skip[2:] = (target[2:] != 0) & (target[2:] != target[:-2])
    alpha = np.full(states, -np.inf)
    alpha[0] = log_probs[0, 0]
    alpha[1] = log_probs[0, target[1]] if states > 1 else -np.inf
    for t in range(1, frames):
        stay = alpha
        step = np.concatenate([[-np.inf], alpha[:-1]])
        jump = np.where(skip, np.concatenate([[-np.inf, -np.inf], alpha[:-2]]), -np.inf)
        alpha = np.logaddexp(np.logaddexp(stay, step), jump) + log_probs[t, target]
    return float(np.logaddexp(alpha[-1], alpha[-2]) if states > 1 else alpha[-1])


_head_lock = threading.Lock()
_head: DigitHead | None = None


def shared_head() -> DigitHead | None:
    """The process's head, loaded on first use (None: the weights are not installed)."""
    global _head
    with _head_lock:
        if _head is None and WEIGHTS.exists():
            _head = DigitHead()
        return _head
