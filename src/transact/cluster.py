"""`transact cluster`: the distributed topology on one machine, every part a process.

PostgreSQL (a throwaway cluster, fsync off), one Redis for the bus and the cache, a
second Redis for the vault (only card capture and the PSP adapter are given its URL),
nginx as the gateway in front, and one `transact serve SERVICE` process per service
instance, all on free ports of 127.0.0.1. `transact migrate` runs once before any
service starts.

Everything lives under one directory. Its state file lists every pid, port and URL,
so `status` and `down` work from another shell, and tests drive the same functions.
`down` stops each process (SIGTERM, then SIGKILL after a timeout) and removes the
directory: nothing is left behind. This is for trying the distributed mode and for
the end-to-end tests, not a supervisor: nothing restarts a process that dies.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import functools
import ipaddress
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Final

import httpx

from transact.deploy import (
    VAULT_SERVICES,  # the only ones given the vault's URL
    profile,
)
from transact.kernel.errors import TransactError

STATE_FILE = "cluster.json"
ENV_FILE = "env.sh"
DEFAULT_DIR = Path(".transact-cluster")
GATEWAY = "gateway"  # nginx is the gateway in this mode: no process serves it
NAMESPACE = "transact"
MAX_REPLICAS = 8
START_TIMEOUT = 90.0  # two cores starting a dozen Python processes take a while
STOP_TIMEOUT = 15.0  # SIGTERM, then SIGKILL: above the bus's drain time (10 s)

# What /proc/PID/cmdline must hold before a signal is sent: a pid from an old state
# file may belong to some other program by now.
MARKERS = {
    "postgres": b"postgres",
    "redis": b"redis-server",
    "nginx": b"nginx",
    "service": b"transact",
}

# The processes this interpreter started, so they are reaped (not left as zombies
# that still look alive) and waited for by their handle.
_children: dict[int, subprocess.Popen[bytes]] = {}


class ClusterError(TransactError):
    """The local cluster cannot be started, found or stopped; the message says why."""


@dataclass
class Proc:
    name: str  # "postgres", "redis", "redis-vault", "nginx", "capture-1", ...
    kind: str  # a key of MARKERS
    pid: int
    port: int
    log: str
    service: str | None = None


@dataclass
class Health:
    name: str
    pid: int
    alive: bool
    healthy: bool
    detail: str


@dataclass
class Cluster:
    directory: str
    pg_data: str  # outside `directory` when running as root (postgres must own it)
    master_key: str
    database_url: str
    redis_url: str
    vault_url: str
    gateway_url: str  # https, self-signed: verify with `certificate`
    http_url: str  # plain HTTP: redirects to the gateway
    certificate: str
    certificate_key: str
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: list[Proc] = field(default_factory=list)

    # --- what clients need ---------------------------------------------------------

    def admin_env(self) -> dict[str, str]:
        """TRANSACT_* for the admin CLI (`transact admin ...`) against this cluster."""
        return {
            "TRANSACT_DATABASE_URL": self.database_url,
            "TRANSACT_BUS_URL": self.redis_url,
            "TRANSACT_CACHE_URL": self.redis_url,
            "TRANSACT_MASTER_KEY": self.master_key,
            "TRANSACT_NAMESPACE": NAMESPACE,
            "TRANSACT_PUBLIC_URL": self.gateway_url,
            **self.extra_env,
        }

    def service_env(self, service: str) -> dict[str, str]:
        env = {**self.admin_env(), "TRANSACT_HOST": "127.0.0.1"}
        if service in VAULT_SERVICES:
            env["TRANSACT_VAULT_URL"] = self.vault_url
        return env

    def instances(self, service: str) -> list[Proc]:
        return [p for p in self.processes if p.service == service]

    def process(self, name: str) -> Proc:
        found = next((p for p in self.processes if p.name == name), None)
        if found is None:
            raise ClusterError(f"no process named {name} in the cluster at {self.directory}")
        return found

    def upstreams(self) -> dict[str, list[str]]:
        served: dict[str, list[str]] = {}
        for proc in self.processes:
            if proc.service is not None:
                served.setdefault(proc.service, []).append(f"127.0.0.1:{proc.port}")
        return served

    # --- the state file ------------------------------------------------------------

    def save(self) -> None:
        path = Path(self.directory) / STATE_FILE
        # It holds the master key: readable by its owner only.
        fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(asdict(self), out, indent=2)
        path.with_suffix(".tmp").replace(path)
        _write_env_file(Path(self.directory) / ENV_FILE, self.admin_env())

    @classmethod
    def load(cls, directory: Path) -> Cluster:
        path = directory / STATE_FILE
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise ClusterError(f"no cluster at {directory} (no {STATE_FILE})") from None
        except (OSError, ValueError) as exc:
            raise ClusterError(f"cannot read {path}: {exc}") from None
        processes = [Proc(**p) for p in raw.pop("processes")]
        return cls(**raw, processes=processes)


def _write_env_file(path: Path, env: Mapping[str, str]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("".join(f"export {k}='{v}'\n" for k, v in sorted(env.items())))


# --- up ------------------------------------------------------------------------------


def up(
    directory: Path = DEFAULT_DIR,
    replicas: Mapping[str, int] | None = None,
    *,
    services: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = START_TIMEOUT,
    progress: Callable[[str], None] = lambda _: None,
) -> Cluster:
    """Start the whole set and return where everything is; stops what it started on failure.

    `services`: which to run (default: every service but the gateway, which is nginx);
    `replicas`: instances per service (default 1); `env`: extra TRANSACT_* for every
    process (tests shorten the bus's visibility timeout with it); `progress` hears
    one line per step. Synchronous: call it where no event loop is running.
    """
    names = _service_names(services)
    counts = _replica_counts(names, replicas or {})
    extra = dict(env or {})
    _check_env(extra)
    directory = directory.absolute()
    _claim_directory(directory)
    cluster: Cluster | None = None
    try:
        cluster = _new_cluster(directory, extra)
        cluster.save()
        progress("starting Redis (bus and cache) and Redis (vault)")
        _start_redis(cluster, "redis", cluster.redis_url)
        _start_redis(cluster, "redis-vault", cluster.vault_url)
        progress("starting PostgreSQL")
        _start_postgres(cluster)
        progress("migrating the schema")
        _migrate(cluster)
        progress(f"starting {sum(counts.values())} service processes")
        for service in names:
            for _ in range(counts[service]):
                _start_service(cluster, service)
        _wait_ready(cluster, [p for p in cluster.processes if p.service], timeout)
        progress("starting nginx")
        _start_nginx(cluster, timeout)
    except BaseException:
        if cluster is not None:
            _stop_all(cluster, STOP_TIMEOUT)
        _remove(directory, cluster.pg_data if cluster else None)
        raise
    return cluster


def _service_names(services: Sequence[str] | None) -> list[str]:
    from transact import runtime

    available = [name for name in runtime.service_factories() if name != GATEWAY]
    if services is None:
        return available
    unknown = sorted(set(services) - set(available))
    if unknown:
        raise ClusterError(
            f"unknown service {', '.join(unknown)}; available: {', '.join(available)}"
        )
    return [name for name in available if name in services]


def _replica_counts(names: Sequence[str], replicas: Mapping[str, int]) -> dict[str, int]:
    unknown = sorted(set(replicas) - set(names))
    if unknown:
        raise ClusterError(f"--replicas names a service not started: {', '.join(unknown)}")
    for service, count in replicas.items():
        _check_count(service, count)
    return {name: replicas.get(name, 1) for name in names}


def _check_count(service: str, count: int) -> None:
    if not 1 <= count <= MAX_REPLICAS:
        raise ClusterError(f"{service}={count}: replicas must be 1 to {MAX_REPLICAS}")
    if count > 1 and profile(service).single_instance:
        # It holds each call's state in memory and gets a call's messages through one
        # competing group: a second instance would hear half of each call.
        raise ClusterError(f"{service}={count}: {service} runs as one instance (per-call state)")


def parse_replicas(values: Iterable[str]) -> dict[str, int]:
    """`capture=2` strings from the command line, as a mapping."""
    counts: dict[str, int] = {}
    for value in values:
        service, sep, count = value.partition("=")
        if not sep or not count.strip().isdigit():
            raise ClusterError(f"--replicas {value!r}: write SERVICE=N, e.g. capture=2")
        counts[service.strip()] = int(count)
    return counts


def _check_env(extra: Mapping[str, str]) -> None:
    wrong = sorted(k for k in extra if not k.startswith("TRANSACT_"))
    if wrong:
        raise ClusterError(f"only TRANSACT_* settings can be passed on: {', '.join(wrong)}")


def _claim_directory(directory: Path) -> None:
    if (directory / STATE_FILE).exists():
        raise ClusterError(
            f"a cluster is already recorded at {directory}: `transact cluster down "
            f"--dir {directory}` first"
        )
    if directory.exists() and any(directory.iterdir()):
        raise ClusterError(f"{directory} exists and is not empty; name another --dir")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "logs").mkdir()


def _new_cluster(directory: Path, extra: dict[str, str]) -> Cluster:
    redis_port, vault_port, pg_port, https_port, http_port = _free_ports(5)
    certificate, key = write_self_signed_certificate(directory / "tls")
    return Cluster(
        directory=str(directory),
        pg_data=_pg_home(directory),
        master_key=extra.pop("TRANSACT_MASTER_KEY", "")
        or base64.b64encode(os.urandom(32)).decode(),
        database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{pg_port}/postgres",
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        vault_url=f"redis://127.0.0.1:{vault_port}/0",
        gateway_url=f"https://127.0.0.1:{https_port}",
        http_url=f"http://127.0.0.1:{http_port}",
        certificate=str(certificate),
        certificate_key=str(key),
        extra_env=extra,
    )


# Listening ports are chosen below the kernel's ephemeral range: a port the kernel hands
# out for port 0 may be handed out again, between our choosing it and a server binding
# it, to any process's outgoing connection (nginx once failed so, "Address already in
# use"). Below the range only a listener that asks for the port by number can take it.
_LISTEN_PORTS: Final = range(20_000, 32_768)


def _ephemeral_floor() -> int:
    with contextlib.suppress(OSError, ValueError, IndexError):
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    return 32_768  # Linux's default


def _free_ports(count: int) -> list[int]:
    """Ports free right now, all different (held open together while they are chosen),
    outside the range the kernel picks outgoing connections' ports from."""
    floor = _ephemeral_floor()
    candidates = [port for port in _LISTEN_PORTS if port < floor]
    random.SystemRandom().shuffle(candidates)
    with contextlib.ExitStack() as stack:
        chosen: list[int] = []
        for port in candidates:
            s = stack.enter_context(socket.socket())
            with contextlib.suppress(OSError):
                s.bind(("127.0.0.1", port))
                chosen.append(port)
                if len(chosen) == count:
                    return chosen
    raise ClusterError(f"no {count} free ports below {floor}")


def _port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


# --- TLS -----------------------------------------------------------------------------


def write_self_signed_certificate(directory: Path, days: int = 30) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1, signed by its own key; for local runs."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "transact local cluster")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        # Its own issuer, so clients trust it by naming this file as their CA bundle.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return cert_path, key_path


def trusting(certificate: str | Path) -> ssl.SSLContext:
    """A client TLS context that trusts the cluster's self-signed certificate (only)."""
    return ssl.create_default_context(cafile=str(certificate))


# --- processes -----------------------------------------------------------------------


def _spawn(argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None) -> int:
    """Start a process in a session of its own (a Ctrl+C in the shell that ran `up` does
    not reach it), its output appended to `log`."""
    with log.open("ab") as out:
        proc = subprocess.Popen(  # noqa: S603  (argv built here, no shell)
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )
    _children[proc.pid] = proc
    return proc.pid


def _base_env() -> dict[str, str]:
    """This process's environment minus TRANSACT_*: a developer's own settings must not
    leak into the cluster's processes."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TRANSACT_")}


def _binary(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ClusterError(f"{name} is not installed (Debian package {package})")
    return found


def _start_redis(cluster: Cluster, name: str, url: str) -> None:
    port = _port_of(url)
    data = Path(cluster.directory) / name
    data.mkdir()
    log = Path(cluster.directory) / "logs" / f"{name}.log"
    argv = [
        _binary("redis-server", "redis-server"),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(data),
    ]
    pid = _spawn(argv, log)
    cluster.processes.append(Proc(name, "redis", pid, port, str(log)))
    cluster.save()
    _wait(lambda: _redis_pong(port), f"{name} on port {port}", 20.0, pid, log)


def _redis_pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _pg_bin() -> Path:
    import glob

    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    if found is None:
        raise ClusterError("PostgreSQL is not installed (Debian package postgresql)")
    return Path(found).parent


def _pg_home(directory: Path) -> str:
    """Where PostgreSQL's files go: initdb and pg_ctl refuse to run as root, so as root
    they run as `postgres` on a directory it owns and can reach (a private temporary
    directory), recorded in the state so that `down` removes it too."""
    if os.geteuid() != 0:
        path = directory / "postgres"
        path.mkdir()
        return str(path)
    path = Path(tempfile.mkdtemp(prefix="transact-cluster-pg-"))
    shutil.chown(path, "postgres", "postgres")
    return str(path)


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def _start_postgres(cluster: Cluster) -> None:
    bindir = _pg_bin()
    home = Path(cluster.pg_data)
    data = home / "data"
    port = _port_of(cluster.database_url.rsplit("/", 1)[0])
    _run(
        _as_postgres(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        ),
        "initdb",
    )
    # A throwaway cluster: durability traded for speed, as the tests' servers do.
    options = (
        f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=400"
    )
    log = home / "postgres.log"
    _run(
        _as_postgres(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(log),
                "-w",
                "-t",
                "60",
                "start",
            ]
        ),
        "pg_ctl start",
    )
    pid = int((data / "postmaster.pid").read_text().split("\n", 1)[0])
    cluster.processes.append(Proc("postgres", "postgres", pid, port, str(log)))
    cluster.save()


def _run(argv: list[str], what: str, env: Mapping[str, str] | None = None) -> None:
    done = subprocess.run(  # noqa: S603  (argv built here, no shell)
        argv, capture_output=True, check=False, env=dict(env) if env is not None else None
    )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).decode(errors="replace").strip()[-800:]
        raise ClusterError(f"{what} failed (exit {done.returncode}): {tail}")


def _migrate(cluster: Cluster) -> None:
    """Once, before any service: services never migrate on PostgreSQL themselves.

    What `transact migrate` does, in this process: it has every module loaded already,
    and a fresh interpreter would spend seconds importing them again."""
    import asyncio

    from transact.kernel.db import Database

    async def migrate() -> None:
        db = Database(cluster.database_url)
        try:
            await db.migrate()
        finally:
            await db.close()

    asyncio.run(migrate())


def _start_service(cluster: Cluster, service: str) -> Proc:
    (port,) = _free_ports(1)
    number = len(cluster.instances(service)) + 1
    name = f"{service}-{number}"
    log = Path(cluster.directory) / "logs" / f"{name}.log"
    argv = [sys.executable, "-m", "transact", "serve", service, "--port", str(port)]
    pid = _spawn(argv, log, {**_base_env(), **cluster.service_env(service)})
    proc = Proc(name, "service", pid, port, str(log), service=service)
    cluster.processes.append(proc)
    cluster.save()
    return proc


def _wait_ready(cluster: Cluster, procs: Sequence[Proc], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for proc in procs:
        _wait(
            functools.partial(_service_ready, proc.port),
            f"{proc.name} (/readyz on port {proc.port})",
            max(1.0, deadline - time.monotonic()),
            proc.pid,
            Path(proc.log),
        )


def _service_ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def render_nginx(cluster: Cluster) -> str:
    from transact.gateway.nginx import Site, render
    from transact.kernel.settings import load_settings

    # The limits every service process applies to itself in one-process mode.
    settings = load_settings(
        **{k.removeprefix("TRANSACT_").lower(): v for k, v in cluster.admin_env().items()}
    )
    prefix = Path(cluster.directory) / "nginx"
    return render(
        Site(
            upstreams=cluster.upstreams(),
            certificate=cluster.certificate,
            certificate_key=cluster.certificate_key,
            max_body_bytes=settings.max_body_bytes,
            rate_limit_scale=settings.rate_limit_scale,
            https_port=_port_of(cluster.gateway_url),
            http_port=_port_of(cluster.http_url),
            public_https_port=_port_of(cluster.gateway_url),
            prefix=str(prefix),
            worker_processes="1",
            listen_address="127.0.0.1",
        )
    )


def _write_nginx_config(cluster: Cluster) -> Path:
    prefix = Path(cluster.directory) / "nginx"
    (prefix / "tmp").mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(render_nginx(cluster))
    return conf


def _start_nginx(cluster: Cluster, timeout: float) -> None:
    binary = _binary("nginx", "nginx")
    conf = _write_nginx_config(cluster)
    prefix = conf.parent
    argv = [binary, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
    _run([*argv, "-t", "-q"], "nginx -t")
    log = Path(cluster.directory) / "logs" / "nginx.log"
    pid = _spawn([*argv, "-g", "daemon off;"], log)
    port = _port_of(cluster.gateway_url)
    cluster.processes.append(Proc("nginx", "nginx", pid, port, str(prefix / "error.log")))
    cluster.save()
    _wait(lambda: _gateway_healthy(cluster), f"nginx on port {port}", timeout, pid, log)


def _gateway_healthy(cluster: Cluster) -> bool:
    try:
        answer = httpx.get(
            f"{cluster.gateway_url}/healthz", verify=trusting(cluster.certificate), timeout=2
        )
    except httpx.HTTPError:
        return False
    return answer.status_code == 200


def _wait(check: Callable[[], bool], what: str, timeout: float, pid: int, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if not is_alive(pid):
            raise ClusterError(f"{what} exited during start; the end of {log}:\n{_tail(log)}")
        time.sleep(0.1)
    raise ClusterError(f"{what} not ready within {timeout:.0f}s; the end of {log}:\n{_tail(log)}")


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- liveness and stopping -----------------------------------------------------------


def proc_stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name: state [0], parent pid [1],
    user and system CPU ticks [11] and [12]; [] when the process is gone. The name is
    skipped by its last parenthesis, since it may hold spaces."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return text.rpartition(")")[2].split() if ")" in text else []


def is_alive(pid: int) -> bool:
    """True while the process runs (a zombie, dead but not reaped, is not alive)."""
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None
    fields = proc_stat(pid)
    return bool(fields) and fields[0] not in ("Z", "X")


def _is_ours(proc: Proc) -> bool:
    """The pid still runs the program we started (pids are reused)."""
    try:
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
    except OSError:
        return False
    return MARKERS[proc.kind] in cmdline


def _signal(proc: Proc, sig: signal.Signals, *, group: bool = False) -> None:
    if not (is_alive(proc.pid) and _is_ours(proc)):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(proc.pid, sig)
        if group and os.getpgid(proc.pid) == proc.pid:
            # Started as a session leader: its group is its own children (nginx workers).
            os.killpg(proc.pid, sig)


def _wait_gone(procs: Sequence[Proc], timeout: float) -> list[Proc]:
    deadline = time.monotonic() + timeout
    left = [p for p in procs if is_alive(p.pid)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if is_alive(p.pid)]
    return left


def stop_processes(procs: Sequence[Proc], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM (a graceful stop for each of these programs), SIGKILL what is left."""
    for proc in procs:
        _signal(proc, signal.SIGTERM)
    for proc in _wait_gone(procs, timeout):
        _signal(proc, signal.SIGKILL, group=True)
    _wait_gone(procs, 5.0)
    for proc in procs:
        child = _children.pop(proc.pid, None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(1)


def _stop_postgres(cluster: Cluster, proc: Proc, timeout: float) -> None:
    data = Path(cluster.pg_data) / "data"
    if data.exists() and is_alive(proc.pid):
        with contextlib.suppress(ClusterError):
            _run(
                _as_postgres(
                    [
                        str(_pg_bin() / "pg_ctl"),
                        "-D",
                        str(data),
                        "-m",
                        "fast",
                        "-t",
                        str(int(timeout)),
                        "-w",
                        "stop",
                    ]
                ),
                "pg_ctl stop",
            )
    stop_processes([proc], timeout)


def _stop_all(cluster: Cluster, timeout: float) -> None:
    """Front door first (no new work), then the services (they finish what they hold),
    then the stores they were writing to."""
    by_kind = {kind: [p for p in cluster.processes if p.kind == kind] for kind in MARKERS}
    stop_processes(by_kind["nginx"], timeout)
    stop_processes(by_kind["service"], timeout)
    stop_processes(by_kind["redis"], timeout)
    for proc in by_kind["postgres"]:
        _stop_postgres(cluster, proc, timeout)


def _remove(directory: Path, pg_data: str | None) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    if pg_data:
        shutil.rmtree(pg_data, ignore_errors=True)


def down(directory: Path = DEFAULT_DIR, timeout: float = STOP_TIMEOUT) -> list[str]:
    """Stop every process of the cluster and remove its files; returns what was stopped."""
    directory = directory.absolute()
    cluster = Cluster.load(directory)
    _stop_all(cluster, timeout)
    _remove(directory, cluster.pg_data)
    return [p.name for p in cluster.processes]


# --- status and scaling --------------------------------------------------------------


def status(directory: Path = DEFAULT_DIR) -> list[Health]:
    """Each recorded process: is it running, and does it answer as it should."""
    cluster = Cluster.load(directory.absolute())
    return [_health(cluster, proc) for proc in cluster.processes]


def _health(cluster: Cluster, proc: Proc) -> Health:
    alive = is_alive(proc.pid) and _is_ours(proc)
    if not alive:
        return Health(proc.name, proc.pid, False, False, "not running")
    if proc.kind == "service":
        healthy, detail = _service_ready(proc.port), f"http://127.0.0.1:{proc.port}/readyz"
    elif proc.kind == "nginx":
        healthy, detail = _gateway_healthy(cluster), f"{cluster.gateway_url}/healthz"
    elif proc.kind == "redis":
        healthy, detail = _redis_pong(proc.port), f"redis://127.0.0.1:{proc.port}"
    else:
        healthy, detail = _tcp_open(proc.port), f"127.0.0.1:{proc.port}"
    return Health(proc.name, proc.pid, True, healthy, detail)


def _tcp_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def scale(directory: Path, service: str, count: int, timeout: float = START_TIMEOUT) -> Cluster:
    """Run `count` instances of `service`: new ones start and join nginx's upstream once
    ready; surplus ones leave the upstream first, then stop gracefully."""
    _check_count(service, count)
    cluster = Cluster.load(directory.absolute())
    running = cluster.instances(service)
    if not running:
        raise ClusterError(f"{service} does not run in the cluster at {directory}")
    if count > len(running):
        started = [_start_service(cluster, service) for _ in range(count - len(running))]
        _wait_ready(cluster, started, timeout)
        reload_nginx(cluster)
    elif count < len(running):
        surplus = running[count:]
        cluster.processes = [p for p in cluster.processes if p not in surplus]
        cluster.save()
        reload_nginx(cluster)
        stop_processes(surplus)
    return cluster


def reload_nginx(cluster: Cluster) -> None:
    """New upstreams in place without dropping a connection (nginx re-reads on SIGHUP)."""
    _write_nginx_config(cluster)
    nginx = cluster.process("nginx")
    _signal(nginx, signal.SIGHUP)
    # The old workers finish their requests while new ones start; give them a moment.
    time.sleep(0.5)


def describe(cluster: Cluster) -> list[str]:
    """Where everything is, for people."""
    lines = [
        f"gateway   {cluster.gateway_url}  (self-signed: {cluster.certificate})",
        f"          {cluster.http_url} redirects there",
        f"database  {cluster.database_url}",
        f"redis     {cluster.redis_url}  (bus and cache)",
        f"vault     {cluster.vault_url}  (capture and psp only)",
    ]
    for proc in cluster.processes:
        if proc.service is not None:
            lines.append(
                f"{proc.name:<24} pid {proc.pid:<8} http://127.0.0.1:{proc.port}  log {proc.log}"
            )
    lines += [
        f"admin CLI: source {Path(cluster.directory) / ENV_FILE}, then `transact admin ...`",
        f"stop: transact cluster down --dir {cluster.directory}",
    ]
    return lines
