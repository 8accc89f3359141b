"""The digit head's arithmetic: CTC scoring, best path, the numpy forward pass."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from transact.voice.digit_head import (
    VOCABULARY,
    WEIGHTS,
    DigitHead,
    _conv1d,
    best_path,
    head_words,
    log_likelihood,
    rank,
)


def random_log_probs(frames: int, seed: int, classes: int = 4) -> np.ndarray:
    logits = np.random.default_rng(seed).normal(size=(frames, classes)).astype(np.float32)
    return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))


def collapse(path: tuple[int, ...]) -> list[int]:
    out: list[int] = []
    previous = 0
    for label in path:
        if label != previous and label != 0:
            out.append(label)
        previous = label
    return out


def brute_force(log_probs: np.ndarray, labels: list[int]) -> float:
    """Sum over every frame-by-frame path that collapses to the labels."""
    total = -math.inf
    for path in itertools.product(range(log_probs.shape[1]), repeat=len(log_probs)):
        if collapse(path) == labels:
            score = float(sum(log_probs[t, c] for t, c in enumerate(path)))
            total = float(np.logaddexp(total, score))
    return total


@pytest.mark.parametrize(
    ("words", "frames", "seed"),
    [
        (["zero"], 3, 1),
        (["zero", "oh"], 4, 2),
        (["oh", "oh"], 4, 3),  # a repeat needs a blank between
        (["zero", "oh", "zero"], 5, 4),
        (["oh", "zero", "zero"], 6, 5),
    ],
)
def test_likelihood_is_the_sum_over_all_alignments(
    words: list[str], frames: int, seed: int
) -> None:
    # Only the first 4 classes (blank, zero, oh, one) so brute force stays small.
    log_probs = random_log_probs(frames, seed)
    labels = [VOCABULARY.index(word) for word in words]
    assert log_likelihood(log_probs, words) == pytest.approx(
        brute_force(log_probs, labels), abs=1e-4
    )


def test_a_repeated_word_cannot_fit_without_a_blank_between() -> None:
    log_probs = random_log_probs(2, 7)
    assert log_likelihood(log_probs, ["oh", "oh"]) == -math.inf
    assert log_likelihood(log_probs, ["oh", "zero"]) > -math.inf


def test_best_path_merges_repeats_and_drops_blanks() -> None:
    one, four = VOCABULARY.index("one"), VOCABULARY.index("four")
    frames = [four, four, 0, one, one, 0, 0, one, 0, one, one]
    log_probs = np.full((len(frames), len(VOCABULARY)), -10.0, dtype=np.float32)
    log_probs[np.arange(len(frames)), frames] = 0.0
    assert best_path(log_probs) == ["four", "one", "one", "one"]


def test_head_words_reads_whisper_text_and_refuses_unknown_words() -> None:
    assert head_words(" Four one, one-  one.") == ["four", "one", "one", "one"]
    assert head_words("twelve twenty eight") == ["twelve", "twenty", "eight"]
    assert head_words("Twelve, twenty-eight.") == ["twelve", "twenty", "eight"]
    assert head_words("one thousand") is None
    assert head_words(" , ") is None


def test_convolution_matches_the_definition() -> None:
    rng = np.random.default_rng(3)
    frames = rng.normal(size=(7, 5)).astype(np.float32)
    weight = rng.normal(size=(4, 5, 3)).astype(np.float32)
    bias = rng.normal(size=4).astype(np.float32)
    padded = np.pad(frames, ((1, 1), (0, 0)))
    expected = np.array(
        [[bias[o] + np.sum(weight[o] * padded[t : t + 3].T) for o in range(4)] for t in range(7)]
    )
    np.testing.assert_allclose(_conv1d(frames, weight, bias), expected, rtol=1e-4, atol=1e-4)


def test_the_shipped_weights_give_a_distribution_per_frame() -> None:
    assert WEIGHTS.exists(), "digit_head.npz ships inside the package"
    head = DigitHead()
    frames = np.random.default_rng(4).normal(size=(25, 384)).astype(np.float32)
    log_probs = head.log_probs(frames)
    assert log_probs.shape == (25, len(VOCABULARY))
    np.testing.assert_allclose(np.exp(log_probs).sum(axis=1), 1.0, rtol=1e-4)


def peaks(words: list[str], frames_per_word: int = 3) -> np.ndarray:
    """Log-probabilities with each word a clear peak, blanks between."""
    frames = []
    for word in words:
        frames += [VOCABULARY.index(word)] * frames_per_word + [0]
    log_probs = np.full((len(frames), len(VOCABULARY)), -8.0, dtype=np.float32)
    log_probs[np.arange(len(frames)), frames] = -0.01
    return log_probs


def test_rank_puts_the_reading_the_head_heard_first() -> None:
    log_probs = peaks(["four", "one", "one", "one"])
    readings = ["four one one", "Four, one one one one.", "four one one one."]
    assert rank(log_probs, readings)[0] == "four one one one."


def test_rank_offers_the_heads_own_reading_of_digit_words() -> None:
    log_probs = peaks(["five", "five", "five", "five"])
    ranked = rank(log_probs, ["five five five", "five five five five five"])
    assert ranked[0] == "five five five five"
    assert set(ranked[1:]) == {"five five five", "five five five five five"}


def test_rank_does_not_offer_its_own_reading_of_tens_and_teens() -> None:
    log_probs = peaks(["twelve", "twenty", "eight"])
    assert rank(log_probs, ["twelve twenty"]) == ["twelve twenty"]


def test_rank_keeps_unscorable_readings_last_in_their_order() -> None:
    log_probs = peaks(["one", "two"])
    assert rank(log_probs, ["one thousand", "one two", "two thousand"]) == [
        "one two",
        "one thousand",
        "two thousand",
    ]


def test_rank_holds_its_own_reading_back_when_it_is_only_a_little_likelier() -> None:
    # The head hears "eight" at 0.6 and "three" at 0.4: its own reading is about 1.2 nats
    # likelier than Whisper's, less than the margin, so Whisper's reading stays first.
    log_probs = peaks(["four", "five", "eight", "two"])
    log_probs[8:11] = -8.0
    log_probs[8:11, VOCABULARY.index("eight")] = np.log(0.6)
    log_probs[8:11, VOCABULARY.index("three")] = np.log(0.4)
    whisper = "Four five, three, two."
    assert rank(log_probs, [whisper])[0] == whisper
    assert rank(log_probs, [whisper], own_margin=0.0)[0] == "four five eight two"
    # The same reading from Whisper is ranked on its likelihood alone.
    assert rank(log_probs, [whisper, "four five eight two."])[0] == "four five eight two."


def test_rank_does_not_hold_back_its_count_of_a_run() -> None:
    # Whisper heard the same words but miscounted the run: the head's count wins on its
    # likelihood alone, however small the lead.
    log_probs = peaks(["five", "five", "five", "five"])
    between = [3, 7, 11]  # the blanks that keep the fives apart, now unsure
    log_probs[between, 0] = np.log(0.8)
    log_probs[between, VOCABULARY.index("five")] = np.log(0.2)
    # Its lead is about 0.3 nats; no margin holds a count back.
    assert rank(log_probs, ["five, five, five."], own_margin=100.0)[0] == "five five five five"
    # A word Whisper did not hear is held back.
    assert rank(log_probs, ["five, five, six."], own_margin=100.0)[0] == "five, five, six."
