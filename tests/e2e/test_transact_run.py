"""`transact run` as a person meets it: it starts, prints where and how to sign in, and works."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import free_port


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRANSACT_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "transact",
            "run",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    banner: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            banner.append(line)
            if "Application startup complete" in line or proc.poll() is not None:
                break
        text = "".join(banner)
        match = re.search(r"password (\S+)", text)
        media = re.search(r"tenant demo, token (\S+)", text)
        assert match, text
        assert media, text
        assert f"http://localhost:{port}" in text
        assert f"ws://localhost:{port}/media/customer" in text
        yield f"http://127.0.0.1:{port}", match.group(1), media.group(1)
    finally:
        proc.terminate()
        proc.wait(15)


def test_the_demo_starts_and_its_printed_credentials_sign_in(
    running: tuple[str, str, str],
) -> None:
    base, password, _ = running
    with httpx.Client(base_url=base, timeout=30) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").status_code == 200
        login = client.post(
            "/api/v1/auth/login",
            json={"tenant": "demo", "username": "agent1", "password": password},
        )
        assert login.status_code == 200, login.text
        me = client.get(
            "/api/v1/auth/me", headers={"Authorization": f"Bearer {login.json()['access_token']}"}
        )
        assert me.json()["username"] == "agent1"
        assert "transact_http_requests_total" in client.get("/metrics").text


def test_a_simulated_call_reaches_the_demo_agent_who_hears_no_keys(
    running: tuple[str, str, str],
) -> None:
    base, password, media_token = running
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "transact",
            "simulate",
            "call",
            "--url",
            base.replace("http://", "ws://"),
            "--tenant",
            "demo",
            "--token",
            media_token,
            "--agent",
            "agent1",
            "--call-id",
            "CA-demo-1",
            "--keys",
            "4242#",
            "--lead-in",
            "0.2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["keys_sent"] == "4242#"
    assert summary["keys_agent_could_decode"] == ""
    with httpx.Client(base_url=base, timeout=30) as client:
        login = client.post(
            "/api/v1/auth/login",
            json={"tenant": "demo", "username": "agent1", "password": password},
        )
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        me = client.get("/api/v1/auth/me", headers=headers).json()
        call = client.get("/api/v1/calls/CA-demo-1", headers=headers)
        assert call.status_code == 200, call.text
        assert call.json()["agent_id"] == me["id"]  # correlated by customParameters.agent
        assert call.json()["state"] == "ended"


def test_a_wrong_media_token_is_refused_by_the_demo(running: tuple[str, str, str]) -> None:
    base, _, _ = running
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "transact",
            "simulate",
            "call",
            "--url",
            base.replace("http://", "ws://"),
            "--tenant",
            "demo",
            "--token",
            "wrong-token",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "invalid media credentials" in json.loads(done.stdout)["closed_reason"]
