"""The process shell: health, readiness, metrics and error bodies."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel

from transact.kernel import Kernel, Service
from transact.kernel.errors import ApiError
from transact.kernel.http import create_app
from transact.kernel.settings import load_settings

KEY = base64.b64encode(b"x" * 32).decode()


class Payment(BaseModel):
    amount: int
    currency: str


def probe_service() -> Service:
    router = APIRouter()

    @router.post("/api/v1/probe/{item_id}")
    async def create(item_id: int, body: Payment) -> dict[str, int]:
        if body.amount < 0:
            raise ApiError(422, "invalid_amount", "amount must be positive")
        return {"id": item_id}

    @router.get("/api/v1/probe-crash")
    async def crash() -> None:
        raise RuntimeError("boom 4111111111111111")

    return Service(name="probe", routers=[router])


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    settings = load_settings(master_key=KEY, data_dir=tmp_path)
    kernel = Kernel.from_settings(settings)
    application = create_app(kernel, [probe_service()], manage_kernel=True)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "cache": "ok", "bus": "ok"}


async def test_readiness_reports_a_dead_backend(app: FastAPI, client: httpx.AsyncClient) -> None:
    await app.state.kernel.db.engine.dispose()
    app.state.kernel.db.url = "broken"

    async def down() -> None:
        from transact.kernel.errors import BackendUnavailable

        raise BackendUnavailable("gone")

    app.state.kernel.db.ping = down
    ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"] == "unavailable"


async def test_metrics_use_route_templates_not_raw_paths(client: httpx.AsyncClient) -> None:
    await client.post("/api/v1/probe/4111111111111111", json={"amount": 1, "currency": "GBP"})
    text = (await client.get("/metrics")).text
    assert 'route="/api/v1/probe/{item_id}"' in text
    assert "4111111111111111" not in text


async def test_validation_errors_are_clear_and_do_not_echo_input(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/api/v1/probe/1", json={"amount": "4111111111111111x", "currency": "GBP"}
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert "amount" in error["message"]
    assert "4111111111111111" not in response.text


async def test_malformed_json_is_a_4xx(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/probe/1", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"


async def test_api_errors_keep_their_code(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/probe/1", json={"amount": -1, "currency": "GBP"})
    assert response.status_code == 422
    assert response.json() == {
        "error": {"code": "invalid_amount", "message": "amount must be positive"}
    }


async def test_unknown_paths_and_methods(client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/v1/nothing")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    wrong = await client.delete("/healthz")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"


async def test_a_bug_answers_500_without_a_trace_or_card_data(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/api/v1/probe-crash")
    assert response.status_code == 500
    assert response.json() == {
        "error": {"code": "internal_error", "message": "something went wrong on our side"}
    }
    assert "Traceback" not in response.text
    assert "4111" not in response.text


async def test_openapi_is_published(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/api/openapi.json")).json()
    assert "/api/v1/probe/{item_id}" in spec["paths"]
