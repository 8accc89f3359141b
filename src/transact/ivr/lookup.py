"""The merchant's account lookup: the caller keyed an account number; what do they owe?

`POST lookup_url` with `{"account", "call_id", "flow"}`, signed like Transact's other
merchant webhooks: `Transact-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of
"<t>.<body>" with the flow's lookup secret>`. The merchant answers `200 {"amount":
minor units, "currency": "GBP", "reference": "..."}` for an account that owes
something, or `404` for an account it does not know. Anything else (another status, a
malformed answer, no answer within `TIMEOUT`) is a failed lookup: the caller is told
the line cannot look accounts up now.

The URL must be https:// to a public host; loopback and private addresses (and
http:// to them) only with `TRANSACT_WEBHOOK_ALLOW_PRIVATE` (tests, closed networks)
or in demo mode. The host is resolved and checked before each request, and the
request goes to the checked address, so a name cannot be re-pointed in between.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import time
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import httpx
import structlog

from transact.contracts.money import check_money
from transact.ivr.domain import AccountFound, AccountNotFound, LookupFailed
from transact.kernel.net import FORBIDDEN_TEXT, Address, address_kind, ip_literal

log = structlog.get_logger("transact.ivr")

TIMEOUT: Final = 5.0
MAX_URL_LENGTH: Final = 2048
MAX_ANSWER_BYTES: Final = 16 * 1024
SIGNATURE_HEADER: Final = "Transact-Signature"

LookupResult = AccountFound | AccountNotFound | LookupFailed


@dataclass(frozen=True)
class Reach:
    """Which non-public hosts a lookup may reach."""

    private: bool = False

    @property
    def allows_http(self) -> bool:
        return self.private


def url_problem(url: str, reach: Reach) -> str | None:
    """None when a lookup URL's form is acceptable, else why not."""
    if not url or len(url) > MAX_URL_LENGTH or any(ch.isspace() for ch in url):
        return f"lookup_url must be a URL of at most {MAX_URL_LENGTH} characters, no spaces"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a port out of range)
    except ValueError:
        return "lookup_url is not a valid URL"
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "lookup_url must be https://host/..."
    if parts.scheme == "http" and not reach.allows_http:
        return "lookup_url must use https://"
    if parts.username is not None or parts.password is not None:
        return "lookup_url must not carry credentials; the signature authenticates"
    literal = ip_literal(parts.hostname)
    if literal is not None and (problem := address_problem(literal, reach)):
        return f"lookup_url names {problem}"
    return None


def address_problem(address: Address, reach: Reach) -> str | None:
    kind = address_kind(address)
    if kind == "forbidden":
        return FORBIDDEN_TEXT
    if kind in ("loopback", "private"):
        return None if reach.private else f"a {kind} address"
    return None


def signature(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def read_answer(status: int, body: bytes) -> LookupResult:
    """The merchant's answer as a domain input."""
    if status == 404:
        return AccountNotFound()
    if status != 200 or len(body) > MAX_ANSWER_BYTES:
        return LookupFailed()
    try:
        data: Any = json.loads(body)
    except ValueError:
        return LookupFailed()
    if not isinstance(data, dict):
        return LookupFailed()
    amount, currency, reference = data.get("amount"), data.get("currency"), data.get("reference")
    if check_money(amount, currency) or not isinstance(reference, str):
        return LookupFailed()
    if not 1 <= len(reference) <= 128:
        return LookupFailed()
    assert isinstance(amount, int)
    assert isinstance(currency, str)
    return AccountFound(amount, currency, reference)


class AccountLookup:
    def __init__(self, reach: Reach, client: httpx.AsyncClient | None = None) -> None:
        self._reach = reach
        self._client = client

    async def __call__(
        self, url: str, secret: str, account: str, call_id: str, flow: str
    ) -> LookupResult:
        body = json.dumps({"account": account, "call_id": call_id, "flow": flow}).encode()
        try:
            pinned, host = await self._pin(url)
        except ValueError as exc:
            log.warning("ivr.lookup_refused", flow=flow, reason=str(exc))
            return LookupFailed()
        headers = {
            "Content-Type": "application/json",
            "Host": host,
            SIGNATURE_HEADER: signature(secret, int(time.time()), body),
        }
        sni = urlsplit(url).hostname if urlsplit(url).scheme == "https" else None
        try:
            async with asyncio.timeout(TIMEOUT):
                response = await self._post(pinned, body, headers, sni)
        except (httpx.HTTPError, TimeoutError, OSError) as exc:
            log.warning("ivr.lookup_failed", flow=flow, error=type(exc).__name__)
            return LookupFailed()
        result = read_answer(response.status_code, response.content)
        log.info("ivr.lookup", flow=flow, status=response.status_code, found=type(result).__name__)
        return result

    async def _post(
        self, url: str, body: bytes, headers: dict[str, str], sni: str | None
    ) -> httpx.Response:
        extensions = {"sni_hostname": sni} if sni else None
        if self._client is not None:
            return await self._client.post(
                url, content=body, headers=headers, extensions=extensions
            )
        async with httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False) as client:
            return await client.post(url, content=body, headers=headers, extensions=extensions)

    async def _pin(self, url: str) -> tuple[str, str]:
        """The URL with its host replaced by a checked address, and the Host header."""
        problem = url_problem(url, self._reach)
        if problem:
            raise ValueError(problem)
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        literal = ip_literal(host)
        if literal is not None:
            addresses = [literal]
        else:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, port, type=socket.SOCK_STREAM
                )
            except (OSError, UnicodeError):
                raise ValueError("lookup_url's host does not resolve") from None
            addresses = [a for a in (ip_literal(str(i[4][0])) for i in infos) if a is not None]
        if not addresses:
            raise ValueError("lookup_url's host does not resolve")
        for address in addresses:
            if problem := address_problem(address, self._reach):
                raise ValueError(f"lookup_url's host resolves to {problem}")
        chosen = addresses[0]
        shown = f"[{chosen}]" if chosen.version == 6 else str(chosen)
        netloc = f"{shown}:{parts.port}" if parts.port else shown
        pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        return pinned, parts.netloc
