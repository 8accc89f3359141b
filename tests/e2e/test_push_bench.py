"""`transact bench push` end to end: a customer keys on a real media stream, card capture
sees each key, and each `capture.progress` reaches the agent's `/ws/agent` socket. The
numbers are printed, never judged here (tests do not time anything)."""

from __future__ import annotations

import json

from tests.integration.test_cli import transact


def test_bench_push_sees_every_key_reach_the_agents_screen() -> None:
    result = transact("bench", "push", "--keys", "10")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)  # stdout holds the JSON and nothing else
    assert report["benchmark"] == "push"
    assert report["keys"] == 10
    assert report["events_matched"] == 10
    for measured in ("key_to_screen_ms", "detect_to_screen_ms"):
        assert {"p50", "p90", "p99", "max", "mean"} <= set(report[measured])
    assert report["target_p99_ms"] == 150.0


def test_bench_push_refuses_too_few_keys() -> None:
    result = transact("bench", "push", "--keys", "3")
    assert result.returncode == 2
    assert "Invalid value for '--keys'" in result.stderr
