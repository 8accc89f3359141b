"""Schemathesis over every operation of `/api/openapi.json`, signed in as an admin: whatever
the generated input, no 5xx and always the JSON error envelope on a 4xx."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.servers import app_server, free_port
from transact import runtime
from transact.auth import Accounts, SigningKeys
from transact.kernel import Kernel
from transact.kernel.settings import Settings, load_settings

KEY = base64.b64encode(b"f" * 32).decode()
PASSWORD = "correct-horse-42"
EXAMPLES = 20
SERVICES = None  # every service the composition root knows: the whole public API


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    config = load_settings(
        master_key=KEY,
        database_url=f"sqlite+aiosqlite:///{tmp}/transact.db",
        data_dir=tmp,
        rate_limit_scale=0,
    )
    asyncio.run(_admin(config))
    _, app = runtime.build(config, SERVICES)
    port = free_port()
    server = app_server(app, port)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    yield base, signed_in(base)
    server.should_exit = True
    thread.join(10)


def signed_in(base: str) -> dict[str, str]:
    login = httpx.post(
        f"{base}/api/v1/auth/login",
        json={"tenant": "fuzz", "username": "root", "password": PASSWORD},
    )
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


async def _admin(config: Settings) -> None:
    """Tenant and admin written to the database before the server (its own kernel) starts."""
    kernel = Kernel.from_settings(config)
    try:
        await kernel.db.migrate()
        accounts = Accounts(kernel, SigningKeys(kernel))
        tenant = await accounts.create_tenant("fuzz", mfa_required=False)
        await accounts.create_user(tenant.id, "root", "admin", PASSWORD)
    finally:
        await kernel.db.close()
        await kernel.cache.close()
        await kernel.bus.close()


@pytest.fixture(scope="module")
def api_schema(server: tuple[str, dict[str, str]]) -> Any:
    base, headers = server
    return schemathesis.openapi.from_url(f"{base}/api/openapi.json", headers=headers)


def operations(api_schema: Any) -> list[Any]:
    return [result.ok() for result in api_schema.get_all_operations()]


def test_the_schema_lists_the_api(api_schema: Any) -> None:
    labels = {op.label for op in operations(api_schema)}
    assert "POST /api/v1/calls/{call_id}/payments" in labels
    assert len(labels) > 30


def test_no_input_makes_the_api_fail_or_answer_off_envelope(
    api_schema: Any, server: tuple[str, dict[str, str]]
) -> None:
    base, _ = server
    failures: list[str] = []
    calls: list[str] = []
    for operation in operations(api_schema):
        # A fresh session each time: fuzzing `logout` ends the one before.
        headers = signed_in(base)
        with contextlib.suppress(AssertionError):  # recorded; go on with the others
            _prober(operation, headers, failures, calls)()
    assert failures == []
    # It really called the API, signed in (some answers succeed) with input that
    # varies enough to be refused too.
    assert len(calls) >= len(operations(api_schema)) * 5
    statuses = {int(c.rsplit(" ", 1)[1]) for c in calls}
    assert any(200 <= s < 300 for s in statuses), statuses
    assert 422 in statuses, statuses


def _prober(operation: Any, headers: dict[str, str], failures: list[str], calls: list[str]) -> Any:
    """A hypothesis test of one operation that records what went wrong."""

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def probe(case: Any) -> None:
        response = case.call(headers=headers)
        calls.append(f"{operation.label} {response.status_code}")
        problem = _problem(case, response)
        if problem:
            failures.append(f"{operation.label}: {response.status_code} {problem}"[:500])
            raise AssertionError(problem)

    return probe


def _problem(case: Any, response: Any) -> str | None:
    """Why this answer is wrong: a 5xx, or a 4xx without the error envelope."""
    try:
        case.validate_response(response, checks=[not_a_server_error])
    except Exception as exc:  # schemathesis reports failures as its own exception types
        return str(exc)
    if 400 <= response.status_code < 500 and response.content:
        try:
            body = response.json()
        except ValueError:
            return "a 4xx that is not JSON"
        if not isinstance(body, dict) or "code" not in body.get("error", {}):
            return f"a 4xx without the error envelope: {response.text[:200]}"
    return None
