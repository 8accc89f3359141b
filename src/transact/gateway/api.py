"""The front door in one process: pure ASGI middleware around the whole app.

Request ids, rate limits, the body limit and security headers. Pure ASGI rather than
Starlette's BaseHTTPMiddleware: that one buffers responses, runs the app in another
task and cannot see WebSocket or lifespan traffic, which must pass through untouched.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

import structlog
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from transact.gateway.domain import (
    app_may_set,
    buckets_for,
    classify,
    principal_key,
    request_id_for,
    retry_after,
    security_headers,
)
from transact.gateway.store import RateLimitStore
from transact.kernel.errors import BackendUnavailable

log = structlog.get_logger("transact.gateway")

REQUEST_ID_HEADER = b"x-request-id"
_DIGITS = re.compile(r"[0-9]+")


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a streamed body passes the limit.

    An HTTPException, so the app's own handler answers the 413 envelope wherever the
    body was being read; the gateway answers it itself when nothing inside did.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


class Gateway:
    def __init__(
        self,
        app: ASGIApp,
        *,
        limits: RateLimitStore,
        max_body_bytes: int,
        rate_limit_scale: float,
    ) -> None:
        self._app = app
        self._limits = limits
        self._max_body = max_body_bytes
        self._scale = rate_limit_scale

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            # Media streams and the push channel hold one long connection from a few
            # addresses (the telephony platform's); per-request limits do not fit them.
            await self._app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = request_id_for(headers.get("x-request-id"))
        with structlog.contextvars.bound_contextvars(request_id=request_id):
            await self._http(scope, receive, send, headers, request_id)

    async def _http(
        self, scope: Scope, receive: Receive, send: Send, headers: Headers, request_id: str
    ) -> None:
        path: str = scope["path"]
        exchange = _Exchange(
            receive,
            send,
            [("X-Request-ID", request_id), *security_headers(path)],
            self._max_body,
            app_may_set(path),
        )
        # Downstream sees the id the response will carry, as behind the nginx front door.
        scope = {
            **scope,
            "headers": [
                *((k, v) for k, v in scope["headers"] if k.lower() != REQUEST_ID_HEADER),
                (REQUEST_ID_HEADER, request_id.encode("latin-1")),
            ],
        }
        try:
            if not await self._admit(scope, headers, exchange):
                return
            await self._app(scope, exchange.receive, exchange.send)
        except Exception:
            if exchange.body_too_large:
                # Our own signal, come back out: the client gets its 413, not an error.
                if not exchange.started:
                    await exchange.too_large()
                return
            if not exchange.started:
                log.error("gateway.unhandled", exc_info=True)
                await exchange.error(500, "internal_error", "something went wrong on our side")
            raise

    async def _admit(self, scope: Scope, headers: Headers, exchange: _Exchange) -> bool:
        """Rate limits, then the declared body size; False when the gateway has answered."""
        method: str = scope["method"]
        path: str = scope["path"]
        client = scope.get("client")
        # No proxy headers are trusted in this mode: the peer address is the client.
        ip = str(client[0]) if client else "unknown"
        principal = principal_key(
            headers.get("authorization"), "; ".join(headers.getlist("cookie")) or None
        )
        try:
            wait = await self._limits.take(buckets_for(method, path, ip, principal, self._scale))
        except BackendUnavailable as exc:
            # Fail open: the limiter is a second wall (auth locks accounts itself), and a
            # cache outage should not turn every request, health checks included, into an
            # error on top of whatever else that outage breaks.
            log.warning("gateway.rate_limit_unavailable", detail=str(exc))
            wait = 0.0
        if wait > 0:
            seconds = retry_after(wait)
            # The class, not the path: a path may carry a token (/pay/{token}).
            log.info("gateway.rate_limited", rate_class=classify(method, path).name)
            await exchange.error(
                429,
                "too_many_requests",
                f"too many requests; try again in {seconds} seconds",
                [("Retry-After", str(seconds))],
            )
            return False

        declared = headers.getlist("content-length")
        if declared:
            length = _declared_length(declared)
            if length is None:
                await exchange.error(400, "bad_request", "the Content-Length header is invalid")
                return False
            if length > self._max_body:
                await exchange.too_large()
                return False
        return True


class _Exchange:
    """One HTTP request's trip through the gateway: counts the body, stamps the response."""

    def __init__(
        self,
        receive: Receive,
        send: Send,
        extra_headers: Sequence[tuple[str, str]],
        max_body: int,
        app_may_set: frozenset[str] = frozenset(),
    ) -> None:
        self._receive = receive
        self._send = send
        self._extra = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra_headers]
        self._replaced = {k for k, _ in self._extra}
        self._app_may_set = {name.encode("latin-1") for name in app_may_set}
        self._max_body = max_body
        self._received = 0
        self._swallow = False
        self.started = False
        self.body_too_large = False

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            # A chunked body declares no length; count what actually arrives.
            self._received += len(message.get("body", b""))
            if self._received > self._max_body:
                self.body_too_large = True
                raise BodyTooLarge(self._max_body)
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            if self.body_too_large and message["status"] != 413:
                # Whatever the app made of a body it never fully got (a 500 from a reader
                # outside the routes' error handling), the answer is 413.
                await self.too_large()
                self._swallow = True
                return
            self.started = True
            sent = message.get("headers", [])
            # Where the app may set a header itself (the Agent UI's per-tenant policy), its
            # value stands; everywhere else ours replaces whatever the app set.
            own = self._app_may_set & {k.lower() for k, _ in sent}
            kept = [(k, v) for k, v in sent if k.lower() not in self._replaced or k.lower() in own]
            ours = [(k, v) for k, v in self._extra if k not in own]
            message = {**message, "headers": [*kept, *ours]}
        elif self._swallow:
            return
        await self._send(message)

    async def too_large(self) -> None:
        await self.error(
            413, "payload_too_large", f"the request body is larger than {self._max_body} bytes"
        )

    async def error(
        self, status: int, code: str, message: str, headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        # Compact, like the app's own JSONResponse: one envelope, one spelling.
        envelope = {"error": {"code": code, "message": message}}
        body = json.dumps(envelope, separators=(",", ":")).encode()
        raw = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers),
        ]
        await self.send({"type": "http.response.start", "status": status, "headers": raw})
        await self.send({"type": "http.response.body", "body": body})


def _declared_length(values: list[str]) -> int | None:
    """The one length the request declares, or None when it is malformed or ambiguous."""
    lengths = {v.strip() for value in values for v in value.split(",")}
    if len(lengths) != 1:
        return None
    (length,) = lengths
    return int(length) if _DIGITS.fullmatch(length) else None
