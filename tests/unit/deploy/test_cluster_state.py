"""`transact cluster`'s bookkeeping, without starting anything: options, the state file,
and refusing what it cannot do. Starting and stopping real processes is in
tests/e2e/test_cluster.py."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from transact import cluster
from transact.cli import app


def test_replicas_are_read_from_service_equals_count() -> None:
    assert cluster.parse_replicas(["capture=2", " psp = 3"]) == {"capture": 2, "psp": 3}
    for wrong in ("capture", "capture=two", "capture=-1"):
        with pytest.raises(cluster.ClusterError, match="write SERVICE=N"):
            cluster.parse_replicas([wrong])


def test_unknown_services_and_silly_counts_are_refused_before_anything_starts(
    tmp_path: Path,
) -> None:
    with pytest.raises(cluster.ClusterError, match="unknown service nope"):
        cluster.up(tmp_path / "c", services=["nope"])
    with pytest.raises(cluster.ClusterError, match="replicas must be 1 to"):
        cluster.up(tmp_path / "c", {"capture": 0})
    with pytest.raises(cluster.ClusterError, match="not started"):
        cluster.up(tmp_path / "c", {"psp": 2}, services=["capture"])
    with pytest.raises(cluster.ClusterError, match="only TRANSACT_"):
        cluster.up(tmp_path / "c", env={"PATH": "/x"})
    assert not (tmp_path / "c").exists()


def test_voice_runs_as_one_instance(tmp_path: Path) -> None:
    """A call's audio must reach one recognizer: two instances would each hear half."""
    with pytest.raises(cluster.ClusterError, match="voice=2: voice runs as one instance"):
        cluster.up(tmp_path / "c", {"voice": 2})
    assert not (tmp_path / "c").exists()
    with pytest.raises(cluster.ClusterError, match="voice=3: voice runs as one instance"):
        cluster.scale(tmp_path / "c", "voice", 3)


def test_the_gateway_is_nginx_not_a_process() -> None:
    with pytest.raises(cluster.ClusterError, match="unknown service gateway"):
        cluster.up(Path("/nonexistent/never"), services=["gateway"])


def sample(directory: Path) -> cluster.Cluster:
    return cluster.Cluster(
        directory=str(directory),
        pg_data=str(directory / "pg"),
        master_key="a2V5",
        database_url="postgresql+asyncpg://postgres@127.0.0.1:1/postgres",
        redis_url="redis://127.0.0.1:2/0",
        vault_url="redis://127.0.0.1:3/0",
        gateway_url="https://127.0.0.1:4",
        http_url="http://127.0.0.1:5",
        certificate=str(directory / "tls" / "cert.pem"),
        certificate_key=str(directory / "tls" / "key.pem"),
        processes=[
            cluster.Proc("capture-1", "service", 11, 6, "log", service="capture"),
            cluster.Proc("capture-2", "service", 12, 7, "log", service="capture"),
            cluster.Proc("auth-1", "service", 13, 8, "log", service="auth"),
            cluster.Proc("redis", "redis", 14, 2, "log"),
        ],
    )


def test_the_state_file_round_trips_and_only_its_owner_reads_it(tmp_path: Path) -> None:
    saved = sample(tmp_path)
    saved.save()
    assert cluster.Cluster.load(tmp_path) == saved
    for name in (cluster.STATE_FILE, cluster.ENV_FILE):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert "export TRANSACT_MASTER_KEY='a2V5'" in (tmp_path / cluster.ENV_FILE).read_text()


def test_only_capture_and_psp_are_given_the_vault(tmp_path: Path) -> None:
    state = sample(tmp_path)
    assert state.service_env("capture")["TRANSACT_VAULT_URL"] == state.vault_url
    assert "TRANSACT_VAULT_URL" not in state.service_env("auth")
    assert "TRANSACT_VAULT_URL" not in state.admin_env()


def test_upstreams_list_every_instance(tmp_path: Path) -> None:
    assert sample(tmp_path).upstreams() == {
        "capture": ["127.0.0.1:6", "127.0.0.1:7"],
        "auth": ["127.0.0.1:8"],
    }


def test_a_recorded_cluster_is_not_started_twice(tmp_path: Path) -> None:
    sample(tmp_path).save()
    with pytest.raises(cluster.ClusterError, match="already recorded"):
        cluster.up(tmp_path)


def test_the_cli_says_plainly_when_there_is_no_cluster(tmp_path: Path) -> None:
    for command in ("status", "down", "env"):
        result = CliRunner().invoke(app, ["cluster", command, "--dir", str(tmp_path / "none")])
        assert result.exit_code != 0
        assert "no cluster at" in str(result.exception)


def test_processes_that_are_gone_are_not_signalled(tmp_path: Path) -> None:
    gone = cluster.Proc("ghost", "service", 2**22 + 7, 1, "log", service="x")
    assert not cluster.is_alive(gone.pid)
    cluster.stop_processes([gone], timeout=0.1)  # nothing to do, nothing raised


def test_listening_ports_are_free_distinct_and_below_the_ephemeral_range() -> None:
    # A port from the kernel's ephemeral range can be taken by any outgoing connection
    # between our choosing it and a server binding it.
    ports = cluster._free_ports(5)
    assert len(set(ports)) == 5
    assert all(port < cluster._ephemeral_floor() for port in ports)
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # still free once chosen


def test_a_port_in_use_is_not_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", cluster._free_ports(1)[0]))
        held.listen()
        taken = held.getsockname()[1]
        monkeypatch.setattr(cluster, "_LISTEN_PORTS", range(taken, taken + 2))
        assert cluster._free_ports(1) == [taken + 1]
        with pytest.raises(cluster.ClusterError, match="no 2 free ports"):
            cluster._free_ports(2)
