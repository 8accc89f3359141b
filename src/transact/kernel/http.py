"""The HTTP shell every process shares: JSON errors, health, readiness, metrics."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp

from transact.kernel.core import Kernel
from transact.kernel.errors import ApiError, BackendUnavailable
from transact.kernel.sensitive import redact_card_numbers
from transact.kernel.service import Middleware, Service

log = structlog.get_logger("transact.http")

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    410: "gone",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    423: "locked",
    429: "too_many_requests",
    503: "unavailable",
}


# Seconds a client is told to wait before retrying while a backend is down (a database
# restart or failover takes a few).
RETRY_AFTER_SECONDS = 5
# How long the server keeps an idle HTTP connection open: longer than any client or proxy
# keeps one before reusing it (nginx's upstream keep-alive here 30 s, httpx 5 s). With
# uvicorn's 5 s default, a client reusing a connection at the moment the server closes it
# gets a reset instead of an answer.
SERVER_KEEP_ALIVE_SECONDS = 75

# SQLSTATE classes of a lost or refused database connection: 08 connection exception,
# 57P0x an administrator or crash shutdown / "the database system is starting up", 53300
# too many connections. Anything else (a constraint, a bad query) is a bug, not an outage.
_OUTAGE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300")


def is_backend_outage(exc: BaseException) -> bool:
    """True when `exc` means a database or Redis could not be reached: a 503 to retry,
    not a 500. Follows `raise ... from` chains and exception groups."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, BaseExceptionGroup):
            return all(is_backend_outage(inner) for inner in seen.exceptions)
        if isinstance(
            seen,
            BackendUnavailable
            | ConnectionError  # refused, reset, aborted: the OS's connection errors
            | RedisConnectionError
            | RedisTimeoutError
            | OperationalError
            | InterfaceError,
        ):
            return True
        if isinstance(seen, DBAPIError):
            sqlstate = str(getattr(seen.orig, "sqlstate", "") or "")
            return seen.connection_invalidated or sqlstate.startswith(_OUTAGE_SQLSTATES)
        seen = seen.__cause__
    return False


def unavailable_response() -> JSONResponse:
    response = error_response(503, "unavailable", "a backend is unavailable; try again shortly")
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def error_response(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message, **extra}
    return JSONResponse({"error": body}, status_code=status)


def _describe_validation(exc: RequestValidationError) -> tuple[str, list[dict[str, str]]]:
    fields = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        # Never echo the rejected input: it may be a card number.
        fields.append({"field": loc, "problem": str(err.get("msg", "invalid"))})
    summary = "; ".join(f"{f['field']}: {f['problem']}" for f in fields[:5])
    return summary or "invalid request", fields


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, **exc.extra)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        response = error_response(exc.status_code, code, redact_card_numbers(message))
        for key, value in (exc.headers or {}).items():
            response.headers[key] = value
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        summary, fields = _describe_validation(exc)
        return error_response(422, "invalid_request", summary, fields=fields)

    @app.exception_handler(BackendUnavailable)
    async def _unavailable(_: Request, exc: BackendUnavailable) -> JSONResponse:
        log.error("http.backend_unavailable", detail=str(exc))
        return unavailable_response()

    async def _outage(request: Request, exc: Exception) -> JSONResponse:
        if not is_backend_outage(exc):
            raise exc  # a bug after all (a constraint, a bad query): `_unexpected` answers
        log.error("http.backend_unavailable", path=request.url.path, error=type(exc).__name__)
        return unavailable_response()

    # Handled here, inside the app, rather than by `_unexpected` below: Starlette re-raises
    # what reaches its outermost handler, and the server would log it as a crash.
    for outage in (ConnectionError, RedisConnectionError, RedisTimeoutError, DBAPIError):
        app.add_exception_handler(outage, _outage)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        if is_backend_outage(exc):
            # Not a bug: the database or Redis is restarting. No traceback, a retry hint.
            log.error("http.backend_unavailable", path=request.url.path, error=type(exc).__name__)
            return unavailable_response()
        log.error("http.unhandled", path=request.url.path, error=type(exc).__name__, exc_info=exc)
        return error_response(500, "internal_error", "something went wrong on our side")


def install_metrics(app: FastAPI, kernel: Kernel) -> None:
    requests = Counter(
        "transact_http_requests",
        "HTTP requests by route template and status",
        ["method", "route", "status"],
        registry=kernel.metrics,
    )
    latency = Histogram(
        "transact_http_request_seconds",
        "HTTP request latency by route template",
        ["method", "route"],
        registry=kernel.metrics,
    )

    @app.middleware("http")
    async def _measure(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        # The route template, never the raw path: paths may carry tokens or ids.
        route = getattr(request.scope.get("route"), "path", "unmatched")
        requests.labels(request.method, route, str(response.status_code)).inc()
        latency.labels(request.method, route).observe(time.perf_counter() - started)
        return response


def install_health(app: FastAPI, kernel: Kernel) -> None:
    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        checks: dict[str, str] = {}
        for name, probe in (
            ("database", kernel.db.ping),
            ("cache", kernel.cache.ping),
            ("bus", kernel.bus.ping),
        ):
            try:
                await probe()
                checks[name] = "ok"
            except BackendUnavailable:
                checks[name] = "unavailable"
        if not kernel.started:
            checks["kernel"] = "starting"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "unavailable", "checks": checks},
            status_code=200 if ready else 503,
        )

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(kernel.metrics), media_type=CONTENT_TYPE_LATEST)


def create_app(
    kernel: Kernel, services: Iterable[Service], *, manage_kernel: bool = False
) -> FastAPI:
    """The ASGI app for this process. With `manage_kernel`, its lifespan starts/stops
    the kernel and the services (tests, `transact serve` under an ASGI server)."""
    services = list(services)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if manage_kernel:
            await start_services(kernel, services)
        try:
            yield
        finally:
            if manage_kernel:
                await stop_services(kernel, services)

    app = _App(
        outer_middleware=[wrap for service in services for wrap in service.middleware],
        title="Transact",
        version="0.1.0",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.kernel = kernel
    install_error_handlers(app)
    install_metrics(app, kernel)
    install_health(app, kernel)
    for service in services:
        for router in service.routers:
            app.include_router(router)
    return app


class _App(FastAPI):
    """FastAPI with the services' middleware wrapped around the whole stack.

    `add_middleware` would put it inside Starlette's ServerErrorMiddleware, so the 500
    answered for an unhandled exception would never pass through the front door (no
    security headers, no request id).
    """

    def __init__(self, *, outer_middleware: list[Middleware], **kwargs: Any) -> None:
        self._outer_middleware = outer_middleware
        super().__init__(**kwargs)

    def build_middleware_stack(self) -> ASGIApp:
        app = super().build_middleware_stack()
        # Wrap innermost first, so the first service's first middleware ends up outermost.
        for wrap in reversed(self._outer_middleware):
            app = wrap(app)
        return app


async def start_services(kernel: Kernel, services: list[Service]) -> None:
    from transact.kernel.metrics import bus_metrics, instrument_vault

    bus = bus_metrics(kernel.metrics)
    instrument_vault(kernel.vault, kernel.metrics)
    for service in services:
        for sub in service.subscriptions:
            kernel.bus.subscribe(sub.topic, sub.group, bus.timed(sub.topic, sub.group, sub.handler))
    await kernel.start(migrate=kernel.db.dialect == "sqlite" or kernel.settings.demo)
    for service in services:
        for hook in service.on_start:
            await hook()


async def stop_services(kernel: Kernel, services: list[Service]) -> None:
    # Stop consuming before any service closes what its handlers use (a PSP client, a
    # socket): in-flight handlers finish, messages not yet started go back to the group.
    await kernel.bus.stop()
    for service in reversed(services):
        for hook in service.on_stop:
            await hook()
    await kernel.stop()
