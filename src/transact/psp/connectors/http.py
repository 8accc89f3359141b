"""Sends one `HttpCall` for a connector: the only I/O a connector's call ever needs.

Shared by the adapter core and the contract tests so both speak to a provider
the same way. Transport failures (connect errors, timeouts, a reset connection)
are raised as the `httpx` exceptions they are; telling "provably never sent"
(`httpx.ConnectError`, `httpx.ConnectTimeout`) from "may have been processed"
(`httpx.ReadTimeout`, `httpx.ReadError`, `httpx.RemoteProtocolError`, ...) is
the core's job.

Timeouts are the client's (`httpx.AsyncClient(timeout=...)`). With
`httpx.ASGITransport` (the embedded simulator) httpx applies none: wrap the
call in `asyncio.timeout(...)` there.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol
from urllib.parse import unquote, urlencode

import httpx

from transact.psp.connectors.base import HttpCall

_Asgi = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[MutableMapping[str, Any]]],
        Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ],
    Awaitable[None],
]


class InProcess:
    """An ASGI app (the embedded sandbox) called directly, as `httpx.ASGITransport` calls
    it, without an httpx client's request and response machinery around the call: that
    machinery cost more than the sandbox's answer. What the app raises (the simulator's
    dropped connections raise httpx's own exceptions in-process) is raised as it is."""

    def __init__(self, app: _Asgi) -> None:
        self.app = app

    async def send(self, call: HttpCall) -> tuple[int, Any]:
        body, content_type = _body(call)
        path, _, query = call.path.partition("?")
        headers = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in call.headers.items()
        ]
        if content_type:
            headers.append((b"content-type", content_type))
        headers.append((b"content-length", str(len(body)).encode()))
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": call.method,
            "scheme": "http",
            "path": unquote(path),
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": headers,
            "server": ("sandbox.invalid", 80),
            "client": ("127.0.0.1", 0),
        }
        requested = False
        status = 500
        chunks: list[bytes] = []
        answer_type = ""

        async def receive() -> MutableMapping[str, Any]:
            nonlocal requested
            if requested:
                return {"type": "http.disconnect"}
            requested = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def respond(message: MutableMapping[str, Any]) -> None:
            nonlocal status, answer_type
            if message["type"] == "http.response.start":
                status = int(message["status"])
                for key, value in message.get("headers", []):
                    if key.lower() == b"content-type":
                        answer_type = value.decode("latin-1")
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, respond)
        return status, _parsed(b"".join(chunks).decode("utf-8", "replace"), answer_type)


def _body(call: HttpCall) -> tuple[bytes, bytes | None]:
    """The request body as httpx would encode it."""
    if call.form is not None:
        return urlencode(dict(call.form), doseq=True).encode(), b"application/x-www-form-urlencoded"
    if call.json is not None:
        text = json.dumps(call.json, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return text.encode(), b"application/json"
    return b"", None


class _HasBaseUrl(Protocol):
    base_url: str


def url_for(connector: _HasBaseUrl, call: HttpCall) -> str:
    return connector.base_url.rstrip("/") + call.path


async def send(
    client: httpx.AsyncClient | InProcess,
    connector: _HasBaseUrl,
    call: HttpCall,
) -> tuple[int, Any]:
    """Send `call` to the connector's base URL; return the status and the parsed body.

    The body is the decoded JSON when the answer is JSON, else its text, or None
    when empty. A JSON body that does not parse comes back as text, so a parser
    sees what the provider said instead of an exception here.
    """
    if isinstance(client, InProcess):
        return await client.send(call)
    headers = dict(call.headers)
    kwargs: dict[str, Any] = {}
    if call.form is not None:
        kwargs["data"] = dict(call.form)
    elif call.json is not None:
        kwargs["json"] = call.json
    response = await client.request(
        call.method, url_for(connector, call), headers=headers, **kwargs
    )
    return response.status_code, decode_body(response)


def decode_body(response: httpx.Response) -> Any:
    return _parsed(response.text, response.headers.get("content-type", ""))


def _parsed(text: str, content_type: str) -> Any:
    if not text.strip():
        return None
    if "json" in content_type or text.lstrip()[:1] in ("{", "["):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text
