"""Benchmarks in a fresh interpreter pinned to one core, so that "per core" means one.

Thread pools of numerical libraries are sized when they load, so the limits must be in
the environment before the child imports numpy (or CTranslate2); and a child pinned to
one core cannot hide work on another.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Final

SINGLE_THREAD_ENV: Final = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "CT2_INTER_THREADS": "1",
}


def pin_to_one_core() -> None:
    """The calling process runs on one core from now on (where the OS allows it)."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def run_isolated(module: str, *args: str) -> str:
    """`python -m module args...` with one thread per library; its standard output. The
    module pins itself (`pin_to_one_core`) before it measures."""
    env = {**os.environ, **SINGLE_THREAD_ENV}
    command = [sys.executable, "-m", module, *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise RuntimeError(f"benchmark process failed: {done.stderr.strip()[-500:]}")
    return done.stdout.strip()
