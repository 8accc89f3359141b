"""Backends a fault test may break: a PostgreSQL and a Redis of the test's own, stopped,
killed and started again on the same port and data, so no other test is disturbed.

Built from `tests.servers` (same binaries, same options); a missing binary skips, or
fails under CI, as there.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests import servers


@dataclass
class OwnPostgres:
    """A PostgreSQL cluster in a temporary directory; `stop()`/`start()` keep port and data."""

    bindir: Path
    home: Path
    port: int = field(default_factory=servers.free_port)

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(
            servers._as_postgres([str(self.bindir / "pg_ctl"), "-D", str(self.data), *args]),
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=60,
        )

    def init(self) -> None:
        subprocess.run(
            servers._as_postgres(
                [
                    str(self.bindir / "initdb"),
                    *("-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"),
                    "--no-sync",
                ]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=120,
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.home} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
        )
        self._pg_ctl("-o", options, "-l", str(self.home / "log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """`pg_ctl stop -m fast`: sessions are disconnected, as in a restart or failover."""
        self._pg_ctl("-m", mode, "-w", "stop")


@contextlib.contextmanager
def own_postgres() -> Iterator[OwnPostgres]:
    bindir = servers._pg_bin()
    if bindir is None:
        servers.unavailable("PostgreSQL (initdb) is not installed")
        raise AssertionError  # unreachable
    home = Path(tempfile.mkdtemp(prefix="transact-pg-fault-"))
    if os.geteuid() == 0:
        shutil.chown(home, "postgres", "postgres")
    server = OwnPostgres(bindir, home)
    try:
        server.init()
        server.start()
        yield server
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            server.stop("immediate")
        shutil.rmtree(home, ignore_errors=True)


@dataclass
class OwnRedis:
    """A redis-server on a fixed port; `kill()` is SIGKILL, `start()` the same port again."""

    binary: str
    home: Path
    port: int = field(default_factory=servers.free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                *("--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.home)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        servers.wait_for(lambda: servers._tcp_open(self.port), "redis-server")

    def kill(self) -> None:
        """Gone at once, with everything it held in memory (no persistence configured)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.process = None


@contextlib.contextmanager
def own_redis() -> Iterator[OwnRedis]:
    binary = shutil.which("redis-server")
    if binary is None:
        servers.unavailable("redis-server is not installed")
        raise AssertionError  # unreachable
    with tempfile.TemporaryDirectory(prefix="transact-redis-fault-") as home:
        server = OwnRedis(binary, Path(home))
        server.start()
        try:
            yield server
        finally:
            if server.process is not None:
                server.process.terminate()
                server.process.wait(10)
