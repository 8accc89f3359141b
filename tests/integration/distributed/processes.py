"""Real processes of the distributed mode for tests: `transact serve` and nginx.

Each is started on 127.0.0.1 free ports and always stopped (SIGTERM, then SIGKILL of
its whole process group) when the `with` block ends.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.servers import free_port, unavailable
from transact.cluster import trusting, write_self_signed_certificate
from transact.gateway.nginx import Site, render

KEY = base64.b64encode(b"distributed-tests-master-key-32b").decode()


@dataclass(frozen=True)
class Front:
    """nginx as the gateway: its HTTPS base URL and the certificate to trust."""

    url: str
    certificate: Path
    http_url: str


def stop(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL for the process and its group (nginx workers) if it lingers.

    Only a process that still runs is signalled: an exited one's pid may be reused."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
        return
    except subprocess.TimeoutExpired:
        pass
    proc.kill()
    with contextlib.suppress(ProcessLookupError):
        if os.getpgid(proc.pid) == proc.pid:  # started in a session of its own
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(5)


def wait_until(check: object, what: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode}):\n{log.read_text()[-2000:]}")
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up:\n{log.read_text()[-2000:]}")


def _answers(url: str, **kwargs: object) -> bool:
    try:
        return httpx.get(url, timeout=2, **kwargs).status_code == 200  # type: ignore[arg-type]
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def serving(
    workdir: Path, services: Sequence[str], settings: Mapping[str, str] | None = None
) -> Iterator[str]:
    """`transact serve SERVICES` on SQLite and in-process bus and cache; yields its URL."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRANSACT_")}
    env.update(
        {
            "TRANSACT_MASTER_KEY": KEY,
            "TRANSACT_DATA_DIR": str(workdir),
            "TRANSACT_LOG_LEVEL": "WARNING",
            **(settings or {}),
        }
    )
    log = workdir / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "transact", "serve", *services, "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(f"{url}/readyz"), "transact serve", proc, log)
        yield url
    finally:
        stop(proc)


@contextlib.contextmanager
def nginx(workdir: Path, upstreams: Mapping[str, Sequence[str]], **site: object) -> Iterator[Front]:
    """nginx with the rendered configuration in front of `upstreams`."""
    binary = shutil.which("nginx")
    if binary is None:
        unavailable("nginx is not installed (Debian package nginx)")
        raise AssertionError  # unreachable
    prefix = workdir / "nginx"
    (prefix / "tmp").mkdir(parents=True)
    certificate, key = write_self_signed_certificate(workdir / "tls")
    https_port, http_port = free_port(), free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(
        render(
            Site(
                upstreams=upstreams,
                certificate=str(certificate),
                certificate_key=str(key),
                https_port=https_port,
                http_port=http_port,
                public_https_port=https_port,
                prefix=str(prefix),
                worker_processes="1",
                listen_address="127.0.0.1",
                **site,  # type: ignore[arg-type]
            )
        )
    )
    log = prefix / "error.log"
    argv = [binary, "-p", str(prefix), "-c", str(conf), "-e", str(log)]
    subprocess.run([*argv, "-t", "-q"], check=True, capture_output=True)
    proc = subprocess.Popen(
        [*argv, "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    front = Front(f"https://127.0.0.1:{https_port}", certificate, f"http://127.0.0.1:{http_port}")
    try:
        tls = trusting(certificate)
        wait_until(lambda: _answers(f"{front.url}/healthz", verify=tls), "nginx", proc, log)
        yield front
    finally:
        stop(proc)
