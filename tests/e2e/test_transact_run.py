"""`transact run` as a person meets it: it starts, prints where and how to sign in, and works."""

from __future__ import annotations

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
def running(tmp_path: Path) -> Iterator[tuple[str, str]]:
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
        assert match, text
        assert f"http://localhost:{port}" in text
        yield f"http://127.0.0.1:{port}", match.group(1)
    finally:
        proc.terminate()
        proc.wait(15)


def test_the_demo_starts_and_its_printed_credentials_sign_in(running: tuple[str, str]) -> None:
    base, password = running
    with httpx.Client(base_url=base, timeout=10) as client:
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
