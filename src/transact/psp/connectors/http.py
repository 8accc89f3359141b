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
from typing import Any, Protocol

import httpx

from transact.psp.connectors.base import HttpCall


class _HasBaseUrl(Protocol):
    base_url: str


def url_for(connector: _HasBaseUrl, call: HttpCall) -> str:
    return connector.base_url.rstrip("/") + call.path


async def send(
    client: httpx.AsyncClient,
    connector: _HasBaseUrl,
    call: HttpCall,
) -> tuple[int, Any]:
    """Send `call` to the connector's base URL; return the status and the parsed body.

    The body is the decoded JSON when the answer is JSON, else its text, or None
    when empty. A JSON body that does not parse comes back as text, so a parser
    sees what the provider said instead of an exception here.
    """
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
    text = response.text
    if not text.strip():
        return None
    content_type = response.headers.get("content-type", "")
    if "json" in content_type or text.lstrip()[:1] in ("{", "["):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text
