"""A held-out conformance set, through the commands: WAV files with keys drawn at random
from inside the accept region (every rule at once, anywhere in its range), and with keys
just beyond the reject limits. `transact dtmf detect` must read exactly the keys of the
first and none of the second; `transact dtmf mask` must leave no key in either.

The parameters are seeded, so a failure names a case that can be replayed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.dtmf_signals import (
    Signal,
    mulaw,
    silence,
    tone,
    tone_power,
    with_noise,
    write_mulaw_wav,
)
from transact.cli import app
from transact.telephony.audio import write_wav
from transact.telephony.dtmf import KEYS

runner = CliRunner()
CASES = 30


def accepted_keys(seed: int) -> tuple[str, Signal]:
    """Eight keys, each with its own level (0 to -25 dBm0 per tone), twist (4 dB reverse
    to 8 dB normal), frequency errors (+-1.5 % on each tone), duration and pause (40 to
    120 ms), over line noise 15 to 40 dB below a -25 dBm0 key."""
    rng = np.random.default_rng(seed)
    keys = "".join(rng.choice(list(KEYS), size=8))
    parts = [silence(rng.uniform(50, 300))]
    for key in keys:
        twist = rng.uniform(-4, 8)
        row = rng.uniform(-25 + max(twist, 0), min(twist, 0))
        deviations = rng.uniform(-0.015, 0.015, 2)
        phases = (float(rng.uniform(0, 6.3)), float(rng.uniform(0, 6.3)))
        duration = rng.uniform(40, 120)
        parts.append(tone(key, duration, row, row - twist, *deviations, phases=phases))
        parts.append(silence(rng.uniform(40, 120)))
    noisy = with_noise(np.concatenate(parts), rng.uniform(15, 40), tone_power(-25), seed=seed)
    return keys, noisy


def rejected_keys(seed: int) -> Signal:
    """Eight would-be keys, each breaking one rule just beyond its reject limit: a tone
    3.5 to 4.5 % off, twist of 10 to 12 dB normal or 6 to 8 dB reverse, or 20 ms or less."""
    rng = np.random.default_rng(10_000 + seed)
    parts = [silence(rng.uniform(50, 300))]
    for index in range(8):
        key = str(rng.choice(list(KEYS)))
        level = rng.uniform(-20, -5)
        rule = index % 4
        if rule == 0:
            off = rng.uniform(0.035, 0.045) * rng.choice([-1, 1])
            row_dev, col_dev = (off, 0.0) if rng.integers(2) else (0.0, off)
            burst = tone(key, rng.uniform(40, 120), level, level, row_dev, col_dev)
        elif rule == 1:
            burst = tone(key, rng.uniform(40, 120), level, level - rng.uniform(10, 12))
        elif rule == 2:
            burst = tone(key, rng.uniform(40, 120), level - rng.uniform(6, 8), level)
        else:
            burst = tone(key, rng.uniform(5, 20), level)
        parts += [burst, silence(rng.uniform(60, 120))]
    return with_noise(np.concatenate(parts), rng.uniform(25, 40), tone_power(-25), seed=seed)


def save(path: Path, signal: Signal, seed: int) -> Path:
    """Half the files 16-bit PCM, half mu-law."""
    samples = mulaw(signal)
    if seed % 2:
        write_wav(path, samples)
        return path
    return write_mulaw_wav(path, samples)


def command(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout.rstrip("\n")


@pytest.mark.parametrize("seed", range(CASES))
def test_keys_inside_the_accept_region_are_read_exactly(tmp_path: Path, seed: int) -> None:
    keys, signal = accepted_keys(seed)
    customer = save(tmp_path / "customer.wav", signal, seed)
    assert command("dtmf", "detect", str(customer)) == keys
    command("dtmf", "mask", str(customer), str(tmp_path / "agent.wav"))
    assert command("dtmf", "detect", str(tmp_path / "agent.wav")) == ""


@pytest.mark.parametrize("seed", range(CASES))
def test_keys_beyond_the_reject_limits_are_not_read(tmp_path: Path, seed: int) -> None:
    customer = save(tmp_path / "customer.wav", rejected_keys(seed), seed)
    assert command("dtmf", "detect", str(customer)) == ""
    command("dtmf", "mask", str(customer), str(tmp_path / "agent.wav"))
    assert command("dtmf", "detect", str(tmp_path / "agent.wav")) == ""
