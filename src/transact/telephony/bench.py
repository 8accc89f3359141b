"""`transact bench dtmf`: how many streams one CPU core can keep up with.

Everything is measured in one process pinned to one core with BLAS limited to one thread
(`run_isolated` starts that process), on synthetic customer audio: a noisy line with
speech-like bursts and a card number keyed as DTMF, each stream at its own offset. The
worst case has every stream keying all the time. Timings cover the DSP only, not the
audio generation or the network. Costs per frame are CPU time; tick latencies are wall
time (see `setup.load_average_1min` for how busy the machine was).

* bank: `DetectorBank` of many streams, the headline `streams_per_core`;
* bridge: `DspBank` of 500 legs (detection and masking), time per 20 ms tick;
* single: one `LegDsp` / `DtmfDetector` per stream, frame by frame.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from transact.kernel import isolated
from transact.telephony.audio import FRAME_SAMPLES, SAMPLE_RATE, dbm0_to_peak
from transact.telephony.dtmf import COL_FREQS, KEYS, ROW_FREQS, DetectorBank, DtmfDetector
from transact.telephony.masking import DELAY_SAMPLES, DspBank, LegDsp

FRAME_SECONDS: Final = FRAME_SAMPLES / SAMPLE_RATE
CLIPS: Final = 8  # distinct audio clips; streams share them at different offsets
Samples = npt.NDArray[np.int16]


# --- audio ---------------------------------------------------------------------------------


def _keyed(digits: str, on: int, off: int, level_dbm0: float) -> npt.NDArray[np.float64]:
    t = np.arange(on) / SAMPLE_RATE
    parts = []
    for digit in digits:
        index = KEYS.index(digit)
        row, col = ROW_FREQS[index // 4], COL_FREQS[index % 4]
        burst = np.sin(2 * np.pi * row * t) + np.sin(2 * np.pi * col * t + 1.0)
        parts += [dbm0_to_peak(level_dbm0) * burst, np.zeros(off)]
    return np.concatenate(parts)


def _speech_like(samples: int, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """Low-passed noise in syllable-rate bursts: not speech, but as busy for the DSP."""
    noise = np.convolve(rng.normal(0, 1, samples), np.ones(6) / 6, mode="same")
    envelope = np.clip(np.sin(2 * np.pi * 4 * np.arange(samples) / SAMPLE_RATE), 0, None)
    burst: npt.NDArray[np.float64] = dbm0_to_peak(-15) * 2 * noise * envelope
    return burst


def customer_clip(seconds: float, seed: int, keying_only: bool = False) -> Samples:
    """A customer's side of a call: talk for 6 s, then a card number and expiry keyed at
    a brisk 70/80 ms (a third of the time is keys), repeated. `keying_only`: nothing but
    keys, 50/50 ms, the worst case."""
    rng = np.random.default_rng(seed)
    samples = round(seconds * SAMPLE_RATE)
    ms = SAMPLE_RATE // 1000
    if keying_only:
        pattern = _keyed("4111111111111111#1228#", 50 * ms, 50 * ms, -10)
    else:
        pattern = np.concatenate(
            [
                _speech_like(6 * SAMPLE_RATE, rng),
                _keyed("4111111111111111#1228#", 70 * ms, 80 * ms, -10),
            ]
        )
    audio = np.resize(pattern, samples) + rng.normal(0, dbm0_to_peak(-55), samples)
    return np.clip(np.round(audio), -32768, 32767).astype(np.int16)


def _frames(streams: int, seconds: float, keying_only: bool) -> Iterator[Samples]:
    """Ticks of (streams, 160) frames; each stream plays a clip from its own offset."""
    clips = np.stack([customer_clip(seconds, seed, keying_only) for seed in range(CLIPS)])
    length = clips.shape[1]
    rng = np.random.default_rng(7)
    which = np.arange(streams) % CLIPS
    offsets = rng.integers(0, length, streams)
    for tick in range(length // FRAME_SAMPLES):
        index = (offsets[:, None] + tick * FRAME_SAMPLES + np.arange(FRAME_SAMPLES)) % length
        yield clips[which[:, None], index]


# --- measuring -----------------------------------------------------------------------------
# Two clocks: the thread's CPU time says what the work costs a core (capacity: per-frame
# cost, streams per core), unaffected by other processes sharing the machine; wall time
# says how long a tick took (latency: p50/p99), which such sharing does inflate.


@dataclass
class _Ticks:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def measure(self, step: Callable[[], object]) -> None:
        wall, cpu = time.perf_counter(), time.thread_time()
        step()
        self.cpu.append(time.thread_time() - cpu)
        self.wall.append(time.perf_counter() - wall)


def _run_ticks(
    streams: int, seconds: float, keying_only: bool, step: Callable[[Samples], object]
) -> _Ticks:
    """Time `step` on each tick's frames; making the audio is not timed."""
    ticks = _Ticks()
    source = _frames(streams, seconds, keying_only)
    while chunk := [frame for _, frame in zip(range(50), source, strict=False)]:
        for frame in chunk:
            ticks.measure(partial(step, frame))
    return ticks


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _per_core(seconds_per_stream_frame: float) -> int:
    return int(FRAME_SECONDS / seconds_per_stream_frame)


def _ms(seconds: float) -> float:
    return round(seconds * 1e3, 3)


def measure_bank(streams: int, seconds: float, keying_only: bool = False) -> dict[str, Any]:
    """`DetectorBank`: detection only, all streams in one call per 20 ms tick."""
    bank = DetectorBank(streams)
    ticks = _run_ticks(streams, seconds, keying_only, bank.feed)
    per_frame = statistics.fmean(ticks.cpu) / streams
    return {
        "streams": streams,
        "per_frame_us": round(per_frame * 1e6, 2),
        "streams_per_core": _per_core(per_frame),
        "wall_per_frame_us": round(statistics.fmean(ticks.wall) / streams * 1e6, 2),
        "tick_p99_ms": _ms(_percentile(ticks.wall, 0.99)),
    }


def measure_bridge(legs: int, seconds: float, keying_only: bool = False) -> dict[str, Any]:
    """`DspBank`: detection and masking for every leg of a bridge, one call per tick."""
    bank = DspBank(legs)
    ticks = _run_ticks(legs, seconds, keying_only, bank.process)
    return {
        "legs": legs,
        "tick_p50_ms": _ms(statistics.median(ticks.wall)),
        "tick_p99_ms": _ms(_percentile(ticks.wall, 0.99)),
        "tick_max_ms": _ms(max(ticks.wall)),
        "tick_cpu_p50_ms": _ms(statistics.median(ticks.cpu)),
        "tick_cpu_p99_ms": _ms(_percentile(ticks.cpu, 0.99)),
        "legs_per_core": _per_core(statistics.fmean(ticks.cpu) / legs),
    }


def measure_single(streams: int, seconds: float, make: Callable[[], Any]) -> dict[str, Any]:
    """One object per stream, each fed its own frames in turn, as a bridge without batching."""
    feeds = [getattr(dsp, "process", None) or dsp.feed for dsp in (make() for _ in range(streams))]
    frames = _Ticks()

    def tick(block: Samples) -> None:
        for index, feed in enumerate(feeds):
            frames.measure(partial(feed, block[index]))

    _run_ticks(streams, seconds, False, tick)
    per_frame = statistics.fmean(frames.cpu)
    return {
        "per_frame_us": round(per_frame * 1e6, 1),
        "p99_us": round(_percentile(frames.wall, 0.99) * 1e6, 1),
        "streams_per_core": _per_core(per_frame),
    }


def bench_dtmf(seconds: float = 10.0) -> dict[str, Any]:
    """All measurements, in this process (see `run_isolated` for the one-core setup)."""
    bank = measure_bank(1000, seconds)
    return {
        "streams_per_core": bank["streams_per_core"],
        "per_frame_us": bank["per_frame_us"],
        "bank": bank,
        "bank_all_keying": measure_bank(1000, seconds, keying_only=True),
        "bridge": measure_bridge(500, seconds),
        "bridge_all_keying": measure_bridge(500, seconds, keying_only=True),
        "single_leg_dsp": measure_single(20, seconds, LegDsp),
        "single_detector": measure_single(20, seconds, DtmfDetector),
        "masking_delay_ms": DELAY_SAMPLES * 1000 / SAMPLE_RATE,
        "audio_seconds_per_stream": seconds,
        "setup": setup(),
    }


def setup() -> dict[str, Any]:
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return {
        "cpus": len(cpus),
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
        "numpy": np.__version__,
        # Other work on the machine inflates wall times (not CPU times): say how much.
        "load_average_1min": round(os.getloadavg()[0], 2),
        "machine_cpus": os.cpu_count(),
    }


def run_isolated(seconds: float) -> dict[str, Any]:
    """`bench_dtmf` in a fresh interpreter on one core (`kernel.isolated`)."""
    result: dict[str, Any] = json.loads(
        isolated.run_isolated("transact.telephony.bench", str(seconds))
    )
    return result


if __name__ == "__main__":
    isolated.pin_to_one_core()
    print(json.dumps(bench_dtmf(float(sys.argv[1]) if len(sys.argv) > 1 else 10.0)))
