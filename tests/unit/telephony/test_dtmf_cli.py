"""`transact dtmf detect` / `transact dtmf mask` and the benchmark's measuring functions."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from tests.dtmf_signals import (
    mulaw,
    need_tool,
    sequence,
    tone_power,
    with_noise,
    write_mulaw_wav,
)
from transact.cli import app
from transact.telephony import bench
from transact.telephony.audio import read_wav, write_wav
from transact.telephony.dtmf import KEYS, detect_keys
from transact.telephony.masking import DELAY_SAMPLES

CARD = "4111111111111111#1228#"
runner = CliRunner()


def detect(path: Path) -> str:
    result = runner.invoke(app, ["dtmf", "detect", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    return result.stdout.rstrip("\n")


def test_detect_on_pcm(tmp_path: Path) -> None:
    write_wav(tmp_path / "card.wav", mulaw(sequence(CARD)))
    assert detect(tmp_path / "card.wav") == CARD


def test_detect_on_mu_law(tmp_path: Path) -> None:
    samples = mulaw(with_noise(sequence(KEYS + CARD), 20, tone_power(-10)))
    assert detect(write_mulaw_wav(tmp_path / "law.wav", samples)) == KEYS + CARD


def test_detect_on_a_mu_law_file_made_by_sox(tmp_path: Path) -> None:
    write_wav(tmp_path / "pcm.wav", mulaw(sequence(CARD)))
    sox = need_tool("sox")
    subprocess.run(
        [sox, str(tmp_path / "pcm.wav"), "-e", "mu-law", str(tmp_path / "law.wav")], check=True
    )
    assert detect(tmp_path / "law.wav") == CARD


def test_detect_prints_an_empty_line_when_there_are_no_keys(tmp_path: Path) -> None:
    write_wav(tmp_path / "quiet.wav", np.zeros(8000, dtype=np.int16))
    assert detect(tmp_path / "quiet.wav") == ""


def bad_files(tmp_path: Path) -> dict[str, Path]:
    text = tmp_path / "text.wav"
    text.write_text("not audio\n")
    stereo = tmp_path / "stereo.wav"
    fmt = struct.pack("<HHIIHH", 1, 2, 8000, 32000, 4, 16)
    stereo.write_bytes(
        b"RIFF"
        + struct.pack("<I", 36 + 8)
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data\x08\0\0\0"
        + b"\0" * 8
    )
    wideband = tmp_path / "16k.wav"
    subprocess.run(
        [
            need_tool("sox"),
            "-n",
            "-r",
            "16000",
            "-b",
            "16",
            "-c",
            "1",
            str(wideband),
            "synth",
            "0.1",
            "sine",
            "440",
        ],
        check=True,
    )
    return {"text": text, "stereo": stereo, "16 kHz": wideband, "missing": tmp_path / "none.wav"}


def test_bad_files_are_one_error_line_and_status_2(tmp_path: Path) -> None:
    for name, path in bad_files(tmp_path).items():
        for command in (
            ["dtmf", "detect", str(path)],
            ["dtmf", "mask", str(path), str(tmp_path / "o.wav")],
        ):
            result = runner.invoke(app, command)
            assert result.exit_code == 2, (name, result.output)
            assert result.stdout == "", name
            lines = result.stderr.splitlines()
            assert len(lines) == 1, (name, lines)
            assert lines[0].startswith("error: "), name
            assert str(path) in lines[0], name
    assert not (tmp_path / "o.wav").exists()


def test_mask_writes_what_the_agent_hears(tmp_path: Path) -> None:
    customer = mulaw(sequence(CARD + KEYS, on_ms=50, off_ms=50))
    write_mulaw_wav(tmp_path / "customer.wav", customer)
    result = runner.invoke(
        app, ["dtmf", "mask", str(tmp_path / "customer.wav"), str(tmp_path / "agent.wav")]
    )
    assert result.exit_code == 0, result.output
    heard = read_wav(tmp_path / "agent.wav")
    assert len(heard) == len(customer) + DELAY_SAMPLES
    assert detect(tmp_path / "agent.wav") == ""
    assert detect_keys(heard) == ""
    assert detect(tmp_path / "customer.wav") == CARD + KEYS


def test_mask_to_an_unwritable_place_is_an_error(tmp_path: Path) -> None:
    write_wav(tmp_path / "in.wav", np.zeros(800, dtype=np.int16))
    result = runner.invoke(
        app, ["dtmf", "mask", str(tmp_path / "in.wav"), str(tmp_path / "no" / "out.wav")]
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("error: cannot write")


def test_the_benchmark_measures_every_path() -> None:
    # Shapes only: tests never judge timings.
    assert set(bench.measure_bank(3, 0.5)) >= {"streams", "per_frame_us", "streams_per_core"}
    assert set(bench.measure_bridge(3, 0.5, keying_only=True)) >= {"tick_p99_ms", "legs_per_core"}
    single = bench.measure_single(2, 0.5, bench.LegDsp)
    assert single["per_frame_us"] > 0
    assert detect_keys(bench.customer_clip(10.0, seed=1))  # the benchmark's audio does hold keys
