"""The command line as an operator meets it: one clear line and a non-zero exit on bad input."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import free_port

GOOD_KEY = base64.b64encode(b"k" * 32).decode()


def transact(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRANSACT_")}
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-m", "transact", *args],
        capture_output=True,
        text=True,
        env=clean,
        # A generous bound: each command starts a fresh interpreter and imports the whole
        # package, which once took over 60 s on a CI machine loaded by other work.
        timeout=240,
        check=False,
    )


def assert_one_clear_line(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0]


def test_missing_master_key_outside_demo() -> None:
    result = transact("check", TRANSACT_BUS_URL="memory://")
    assert_one_clear_line(result, "TRANSACT_MASTER_KEY", "transact keygen")


def test_wrong_master_key() -> None:
    result = transact("check", TRANSACT_MASTER_KEY="c2hvcnQ=")
    assert_one_clear_line(result, "TRANSACT_MASTER_KEY", "32 bytes")


def test_published_demo_key_refused_outside_demo() -> None:
    from transact.kernel.settings import DEMO_MASTER_KEY

    result = transact("check", TRANSACT_MASTER_KEY=DEMO_MASTER_KEY)
    assert_one_clear_line(result, "demo key")


def test_malformed_backend_url() -> None:
    result = transact(
        "check", TRANSACT_MASTER_KEY=GOOD_KEY, TRANSACT_BUS_URL="amqp://user:hunter2@broker/"
    )
    assert_one_clear_line(result, "TRANSACT_BUS_URL", "redis://")
    assert "hunter2" not in result.stderr


def test_unreachable_redis(tmp_path: object) -> None:
    url = f"redis://:sekret@127.0.0.1:{free_port()}/0"
    result = transact(
        "check",
        TRANSACT_MASTER_KEY=GOOD_KEY,
        TRANSACT_CACHE_URL=url,
        TRANSACT_DATA_DIR=str(tmp_path),
    )
    assert_one_clear_line(result, "cannot reach Redis", "127.0.0.1")
    assert "sekret" not in result.stderr


def test_unreachable_postgres() -> None:
    url = f"postgresql+asyncpg://u:sekret@127.0.0.1:{free_port()}/db"
    result = transact("check", TRANSACT_MASTER_KEY=GOOD_KEY, TRANSACT_DATABASE_URL=url)
    assert_one_clear_line(result, "cannot reach the database")
    assert "sekret" not in result.stderr


def test_unknown_service() -> None:
    result = transact("serve", "nonsense")
    assert_one_clear_line(result, "unknown service nonsense")


def test_check_passes_on_real_backends(redis_url: str, tmp_path: object) -> None:
    result = transact(
        "check",
        TRANSACT_MASTER_KEY=GOOD_KEY,
        TRANSACT_BUS_URL=redis_url,
        TRANSACT_CACHE_URL=redis_url,
        TRANSACT_DATA_DIR=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.usefixtures("postgres_admin_url")
def test_migrate_creates_the_schema_on_postgres(postgres_admin_url: str) -> None:
    import asyncio

    from tests.conftest import create_database, drop_database

    url = asyncio.run(create_database(postgres_admin_url))
    try:
        env = {"TRANSACT_MASTER_KEY": GOOD_KEY, "TRANSACT_DATABASE_URL": url}
        first, again = transact("migrate", **env), transact("migrate", **env)
        assert first.returncode == 0, first.stderr
        assert again.returncode == 0, again.stderr
    finally:
        asyncio.run(drop_database(postgres_admin_url, url))


def test_keygen_prints_a_usable_key() -> None:
    result = transact("keygen")
    assert result.returncode == 0
    assert len(base64.b64decode(result.stdout.strip())) == 32


# A dozen CLI start-ups in a row: minutes on a loaded two-core machine.
@pytest.mark.timeout(600)
def test_admin_commands_create_tenant_user_and_client(tmp_path: object) -> None:
    env = {"TRANSACT_MASTER_KEY": GOOD_KEY, "TRANSACT_DATA_DIR": str(tmp_path)}
    tenant = transact("admin", "create-tenant", "acme", **env)
    assert tenant.returncode == 0, tenant.stderr
    assert "MFA required" in tenant.stdout
    again = transact("admin", "create-tenant", "acme", **env)
    assert_one_clear_line(again, "acme")

    user = subprocess.run(
        [
            sys.executable,
            "-m",
            "transact",
            "admin",
            "create-user",
            "--tenant",
            "acme",
            "--username",
            "alice",
            "--role",
            "supervisor",
            "--password-stdin",
        ],
        input="correct-horse-42\n",
        capture_output=True,
        text=True,
        check=False,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("TRANSACT_")}, **env},
    )
    assert user.returncode == 0, user.stderr
    assert "correct-horse-42" not in user.stdout
    weak = transact(
        "admin", "create-user", "--tenant", "acme", "--username", "bob", "--role", "wizard", **env
    )
    assert_one_clear_line(weak, "role must be one of")
    generated = transact("admin", "create-user", "--tenant", "acme", "--username", "bob", **env)
    assert "password: " in generated.stdout

    client = transact("admin", "create-client", "--tenant", "acme", "--scope", "launch", **env)
    assert client.returncode == 0, client.stderr
    assert "client_secret: sec_" in client.stdout
    missing = transact("admin", "create-client", "--tenant", "nope", **env)
    assert_one_clear_line(missing, "no tenant named")

    verified = transact("audit", "verify", **env)
    assert verified.returncode == 0, verified.stderr
    assert "intact" in verified.stdout


def test_audit_verify_fails_on_a_tampered_chain(tmp_path: object) -> None:
    import sqlite3

    env = {"TRANSACT_MASTER_KEY": GOOD_KEY, "TRANSACT_DATA_DIR": str(tmp_path)}
    assert transact("admin", "create-tenant", "acme", **env).returncode == 0
    assert transact("admin", "create-tenant", "other", **env).returncode == 0
    with sqlite3.connect(f"{tmp_path}/transact.db") as db:
        db.execute("UPDATE kernel_audit SET actor = 'someone-else' WHERE seq = 1")
    result = transact("audit", "verify", **env)
    assert_one_clear_line(result, "audit chain broken at record 1")
    assert result.returncode == 1


def test_bench_payments_prints_its_measurements_as_json() -> None:
    import json

    result = transact("bench", "payments", "--seconds", "0.5", "--concurrency", "2")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)  # the JSON alone: no log line before it
    assert report["benchmark"] == "payments"
    assert report["payments"] > 0
    assert report["outcomes"] == {"payment.authorized": report["payments"]}
    assert {"p50", "p99"} <= set(report["overhead_ms"])
    wrong = transact("bench", "payments", "--connector", "paypal", "--seconds", "0.5")
    assert_one_clear_line(wrong, "connector must be")


def test_admin_sets_psp_routes_from_a_file(tmp_path: Path) -> None:
    import json

    env = {"TRANSACT_MASTER_KEY": GOOD_KEY, "TRANSACT_DATA_DIR": str(tmp_path)}
    assert transact("admin", "create-tenant", "acme", **env).returncode == 0
    routes = tmp_path / "routes.json"
    routes.write_text(
        json.dumps(
            {
                "mode": "auth",
                "routes": [
                    {"connector": "stripe", "currencies": ["GBP"]},
                    {"connector": "sandbox", "priority": 1},
                ],
                "credentials": {"stripe": {"secret_key": "sk_test_cli"}},
            }
        )
    )
    done = transact("admin", "set-routes", "--tenant", "acme", "--file", str(routes), **env)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["mode"] == "auth"
    assert [r["connector"] for r in shown["routes"]] == ["stripe", "sandbox"]
    assert "sk_test_cli" not in done.stdout

    routes.write_text(json.dumps({"routes": [{"connector": "stripe"}]}))
    missing = transact("admin", "set-routes", "--tenant", "acme", "--file", str(routes), **env)
    assert_one_clear_line(missing, "secret_key")
    routes.write_text("not json")
    garbage = transact("admin", "set-routes", "--tenant", "acme", "--file", str(routes), **env)
    assert_one_clear_line(garbage, "cannot read routes")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("dtmf", "detect"), "Missing argument"),
        (("bench", "calls", "--calls", "many"), "Invalid value for '--calls'"),
        (("simulate", "call", "--url", "ws://x", "--tenant", "t"), "Missing option '--token'"),
    ],
)
def test_usage_errors_say_what_is_wrong_without_a_traceback(
    args: tuple[str, ...], needle: str
) -> None:
    result = transact(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    assert needle in result.stderr


def test_simulate_call_reports_an_unreachable_server_in_one_line() -> None:
    result = transact(
        "simulate",
        "call",
        "--url",
        f"ws://127.0.0.1:{free_port()}",
        "--tenant",
        "t",
        "--token",
        "x",
    )
    assert_one_clear_line(result, "cannot reach")
