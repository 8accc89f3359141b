"""Outgoing merchant webhooks: every payment outcome, signed, retried with backoff, once per event.

* **Intake.** The `psp-webhooks` consumer group hears every payment outcome. For a
  tenant with an enabled endpoint it records one delivery row, in the same
  transaction as the inbox mark for the bus message, so a redelivered message
  adds nothing; the row is also unique by (tenant, event id) as a second wall.
* **Delivery.** A worker claims due rows (`FOR UPDATE SKIP LOCKED` on PostgreSQL),
  counts the attempt and leases the row before it sends, then POSTs the stored
  body. 2xx is delivered; anything else (3xx included: redirects are not followed)
  or a transport error is retried after `backoff()`, up to `max_attempts`, then
  the row is `failed`. Delivery is at-least-once: a worker that dies after the
  merchant answered sends again when the lease ends, so merchants deduplicate by
  the event id (`Transact-Event-Id`, and `id` in the body).
* **Signature** (Stripe's scheme): `Transact-Signature: t=<unix>,v1=<hex>` where
  the hex is HMAC-SHA256 keyed with the endpoint secret (the whole `whsec_...`
  string, UTF-8) over `f"{t}.".encode() + body`. `verify_signature()` checks it.
* **Endpoint URL rule (and SSRF guard).** `https://`, to a public address. The
  host is resolved when the URL is set *and again at every delivery*, and the
  request goes to the very address that was checked (the URL's host stays in
  `Host` and in TLS SNI/certificate checks), so DNS changed after the check
  (rebinding) cannot steer a delivery inward. Refused, whatever the host name:
  loopback, private (RFC 1918, ULA, CGNAT and other non-global ranges),
  link-local (cloud metadata at 169.254.169.254 included), multicast, reserved
  and unspecified addresses, IPv4-mapped IPv6 forms of them too. Two switches
  (`TargetPolicy`) open this up: demo mode allows loopback receivers, and
  `TRANSACT_WEBHOOK_ALLOW_PRIVATE=true` (tests, closed networks) allows loopback
  and private ones; link-local, multicast, reserved and unspecified stay refused.
  Plain `http://` is accepted only when one of those switches is on, and only to
  an address it allows, never to a public one. No user:password in the URL (it
  would be stored and shown in clear), no fragment. A refused URL is a 422 when
  set; a delivery whose target is refused at send time is marked `failed`
  (`last_error = target_refused`) at once, never retried.
* **What is sent** is an allowlist of outcome fields plus the payment's amount,
  currency and merchant reference: never card data, by construction.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import random
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import structlog

from transact.contracts import Message, utcnow
from transact.contracts.payments import (
    PaymentAuthorized,
    PaymentCaptured,
    PaymentDeclined,
    PaymentFailed,
    PaymentPending,
    PaymentRefunded,
    PaymentVoided,
)
from transact.kernel import Kernel, Service, audit
from transact.kernel.db import first_time
from transact.kernel.errors import ApiError, VaultError
from transact.kernel.net import FORBIDDEN_TEXT, Address, address_kind, ip_literal
from transact.kernel.security import Principal
from transact.kernel.sensitive import redact_card_numbers
from transact.psp import store as payments_store
from transact.psp import webhook_store as store
from transact.psp.webhook_api import build_router

log = structlog.get_logger("transact.psp.webhooks")

GROUP = "psp-webhooks"
SECRET_CONTEXT = b"psp-webhook-secret"
SECRET_PREFIX = "whsec_"  # noqa: S105  (a label merchants recognize, not a secret)
SIGNATURE_HEADER = "Transact-Signature"
EVENT_ID_HEADER = "Transact-Event-Id"
MAX_URL_LENGTH = 2048
# After the n-th failed attempt wait DEFAULT_DELAYS[n-1], the last one repeating:
# 10 attempts span about 22 hours, long enough to outlast a merchant's bad night.
DEFAULT_DELAYS: tuple[float, ...] = (5.0, 30.0, 120.0, 600.0, 3600.0, 3 * 3600.0, 6 * 3600.0)
MAX_ATTEMPTS = 10
SIGNATURE_TOLERANCE = 300
RETENTION = timedelta(days=30)

_OUTCOME_FIELDS = (
    "payment_id",
    "connector",
    "psp_reference",
    "decline_code",
    "attempts",
    "stored_card_id",
)
# What a merchant is told, topic by topic. An allowlist rather than "the whole
# message", so a field added to a contract later never reaches merchants unreviewed.
DATA_FIELDS: dict[str, tuple[str, ...]] = {
    PaymentAuthorized.topic: _OUTCOME_FIELDS,
    PaymentDeclined.topic: _OUTCOME_FIELDS,
    PaymentFailed.topic: _OUTCOME_FIELDS,
    # The challenge's URL is the cardholder's, not the merchant backend's: not sent.
    PaymentPending.topic: (*_OUTCOME_FIELDS, "action"),
    PaymentRefunded.topic: (
        "payment_id",
        "amount",
        "refunded_total",
        "fully",
        "connector",
        "psp_reference",
    ),
    PaymentCaptured.topic: ("payment_id", "amount", "captured_total", "connector", "psp_reference"),
    PaymentVoided.topic: ("payment_id", "connector", "psp_reference"),
}
TOPICS = tuple(DATA_FIELDS)


# --- pure rules: signing, backoff, URLs, payloads ---------------------------------------


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The `Transact-Signature` header value for `body` sent at `timestamp`."""
    return f"t={timestamp},v1={_digest(secret, timestamp, body)}"


def verify_signature(
    secret: str,
    header: str,
    body: bytes | str,
    tolerance: int = SIGNATURE_TOLERANCE,
    now: float | None = None,
) -> bool:
    """True when `header` signs exactly `body` with `secret`, within `tolerance` seconds.

    For merchants' receivers and our tests. Pass the raw body as received: a JSON
    re-encoding of it does not verify. Several `v1=` entries are accepted (any one
    may match), so a receiver keeps working while a secret is being rotated.
    """
    raw = body.encode() if isinstance(body, str) else body
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                return False
        elif key == "v1" and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    # Both ways: a stale signature may be a replay, a future one a forged clock.
    if abs(current - timestamp) > tolerance:
        return False
    expected = _digest(secret, timestamp, raw)
    return any(hmac.compare_digest(expected, c) for c in candidates)


def backoff(attempts: int, delays: Sequence[float] = DEFAULT_DELAYS) -> float:
    """Seconds to wait after `attempts` failed attempts (1 = the first one failed)."""
    if not delays:
        raise ValueError("delays must not be empty")
    return float(delays[min(max(attempts, 1), len(delays)) - 1])


@dataclass(frozen=True)
class TargetPolicy:
    """Which non-public destinations a merchant webhook may reach (see the module's rule)."""

    allow_loopback: bool = False  # demo mode: a receiver on this machine
    allow_private: bool = False  # TRANSACT_WEBHOOK_ALLOW_PRIVATE: loopback and private ranges

    @classmethod
    def from_settings(cls, settings: Any) -> TargetPolicy:
        return cls(
            allow_loopback=bool(settings.demo),
            allow_private=bool(getattr(settings, "webhook_allow_private", False)),
        )

    @property
    def allows_http(self) -> bool:
        return self.allow_loopback or self.allow_private


Resolver = Callable[[str, int], Awaitable[list[str]]]


class TargetRefused(Exception):
    """The URL or the address its host resolves to may not receive webhooks: final."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TargetUnresolved(Exception):
    """The host did not resolve now; it may later."""


def address_problem(address: Address, policy: TargetPolicy) -> str | None:
    """None when `address` may receive webhooks under `policy`, else what kind it is."""
    kind = address_kind(address)
    if kind == "loopback":
        return None if policy.allow_loopback or policy.allow_private else "a loopback address"
    if kind == "forbidden":
        return FORBIDDEN_TEXT
    if kind == "private":
        return None if policy.allow_private else "a private (non-public) address"
    return None


def url_problem(url: str, policy: TargetPolicy | None = None) -> str | None:
    """None when the URL's form is acceptable, else why not (see the module's URL rule).

    Its form only, and a host given as an IP literal; a host name is checked once
    resolved (`vet_target`).
    """
    policy = policy or TargetPolicy()
    if not url or len(url) > MAX_URL_LENGTH:
        return f"url must be 1-{MAX_URL_LENGTH} characters"
    if not url.isprintable() or any(ch.isspace() for ch in url):
        return "url must not contain spaces or control characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a port out of range)
    except ValueError:
        return "url is not a valid URL"
    if parts.scheme not in ("https", "http"):
        return "url must start with https://"
    if not parts.hostname:
        return "url must name a host"
    if parts.username is not None or parts.password is not None:
        return "url must not carry credentials; authenticate with the signature instead"
    if parts.fragment:
        return "url must not have a #fragment"
    if parts.scheme == "http" and not policy.allows_http:
        return "url must use https://"
    literal = ip_literal(parts.hostname)
    if literal is not None:
        problem = address_problem(literal, policy)
        if problem:
            return f"url names {problem}; webhooks go to public hosts only"
    return None


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True)
class PinnedTarget:
    """Where one delivery goes: the checked address, with the URL's host kept for HTTP and TLS."""

    url: str  # the URL with its host replaced by the checked address
    host_header: str
    sni_hostname: str | None


async def vet_target(
    url: str, policy: TargetPolicy, resolve: Resolver = system_resolver
) -> PinnedTarget:
    """Check the URL and every address its host resolves to; pin the first.

    Raises TargetRefused (final) or TargetUnresolved (may change).
    """
    problem = url_problem(url, policy)
    if problem:
        raise TargetRefused(problem)
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    literal = ip_literal(host)
    if literal is not None:
        addresses: list[Address] = [literal]
    else:
        try:
            found = await resolve(host, port)
        except (OSError, UnicodeError):
            raise TargetUnresolved(host) from None
        addresses = [a for a in (ip_literal(str(x)) for x in found) if a is not None]
        if not addresses:
            raise TargetUnresolved(host)
    for address in addresses:
        problem = address_problem(address, policy)
        if problem:
            raise TargetRefused(f"url's host resolves to {problem}; webhooks go to public hosts")
    public = [a for a in addresses if address_problem(a, TargetPolicy()) is None]
    if parts.scheme == "http" and public:
        raise TargetRefused("url must use https:// to reach a public host")
    chosen = addresses[0]
    shown = f"[{chosen}]" if chosen.version == 6 else str(chosen)
    netloc = f"{shown}:{parts.port}" if parts.port else shown
    return PinnedTarget(
        url=urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, "")),
        host_header=parts.netloc,
        sni_hostname=host if parts.scheme == "https" and literal is None else None,
    )


def _shown(url: str) -> str:
    """The URL without its query: merchants sometimes put a token there."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def event_payload(message: Message, payment: payments_store.Payment | None) -> dict[str, Any]:
    """The JSON body for one event: `{id, type, created, data}`; amounts in minor units.

    `data.amount` is the payment's amount for an authorization outcome or a void,
    and the amount moved for a capture or a refund.
    """
    data: dict[str, Any] = {name: getattr(message, name) for name in DATA_FIELDS[message.topic]}
    if payment is not None and payment.tenant_id == message.tenant_id:
        data.setdefault("amount", payment.amount)
        data["currency"] = payment.currency
        # Free text an agent typed: mask a card number typed in the wrong box.
        data["reference"] = redact_card_numbers(payment.reference)
    return {
        "id": message.id,
        "type": message.type,
        "created": int(message.occurred_at.timestamp()),
        "data": data,
    }


def encode(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"))


# --- the service -------------------------------------------------------------------------


class Webhooks:
    def __init__(
        self,
        kernel: Kernel,
        *,
        delays: Sequence[float] = DEFAULT_DELAYS,
        max_attempts: int = MAX_ATTEMPTS,
        poll_interval: float = 1.0,
        timeout: float = 10.0,
        batch_size: int = 20,
        jitter: float = 0.1,
        targets: TargetPolicy | None = None,
        resolve: Resolver = system_resolver,
    ) -> None:
        if not delays or min(delays) < 0:
            raise ValueError("delays must be a non-empty list of non-negative seconds")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.kernel = kernel
        self.delays = tuple(float(d) for d in delays)
        self.max_attempts = max_attempts
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.batch_size = batch_size
        self.jitter = jitter
        self.targets = targets or TargetPolicy.from_settings(kernel.settings)
        self.resolve = resolve
        # Longer than any one send can take, so a live worker's row is never re-claimed.
        self.lease = timedelta(seconds=max(60.0, 3 * timeout))
        self._http: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._next_prune = 0.0

    # --- endpoint settings (the API's use cases) ------------------------------------------

    async def set_endpoint(
        self, principal: Principal, url: str, enabled: bool = True
    ) -> dict[str, Any]:
        """Create or replace the tenant's endpoint; a new secret each time, shown once."""
        url = url.strip()
        try:
            await vet_target(url, self.targets, self.resolve)
        except TargetRefused as refused:
            raise ApiError(422, "invalid_url", refused.reason) from None
        except TargetUnresolved:
            raise ApiError(422, "invalid_url", "url's host does not resolve") from None
        secret = new_secret()
        sealed = self.kernel.vault.seal(principal.tenant_id, secret.encode(), SECRET_CONTEXT)
        async with self.kernel.db.transaction() as session:
            await store.set_endpoint(session, principal.tenant_id, url, sealed, enabled)
            if not enabled:
                await store.cancel_pending(session, principal.tenant_id, "endpoint_disabled")
            await audit.append(
                session,
                action="psp.webhook_set",
                actor=principal.actor,
                tenant_id=principal.tenant_id,
                target=principal.tenant_id,
                details={"url": _shown(url), "enabled": enabled},
            )
        return {"url": url, "enabled": enabled, "secret": secret}

    async def endpoint(self, principal: Principal) -> dict[str, Any]:
        async with self.kernel.db.transaction() as session:
            found = await store.endpoint(session, principal.tenant_id)
        if found is None:
            raise ApiError(404, "not_found", "no webhook endpoint is set")
        return {
            "url": found.url,
            "enabled": found.enabled,
            "created_at": found.created_at.isoformat(),
            "updated_at": found.updated_at.isoformat(),
        }

    async def delete_endpoint(self, principal: Principal) -> None:
        async with self.kernel.db.transaction() as session:
            if not await store.delete_endpoint(session, principal.tenant_id):
                raise ApiError(404, "not_found", "no webhook endpoint is set")
            # What is still owed has nowhere to go now; say so rather than leave it pending.
            cancelled = await store.cancel_pending(session, principal.tenant_id, "endpoint_removed")
            await audit.append(
                session,
                action="psp.webhook_deleted",
                actor=principal.actor,
                tenant_id=principal.tenant_id,
                target=principal.tenant_id,
                details={"cancelled_deliveries": cancelled},
            )

    async def deliveries(self, principal: Principal, limit: int) -> list[dict[str, Any]]:
        async with self.kernel.db.transaction() as session:
            rows = await store.recent(session, principal.tenant_id, limit)
        described = []
        for row in rows:
            pending = row["status"] == store.PENDING
            described.append(
                {
                    "id": row["event_id"],
                    "type": row["event_type"],
                    "payment_id": row["payment_id"],
                    "status": row["status"],
                    "attempts": row["attempts"],
                    "last_status_code": row["last_status_code"],
                    "last_error": row["last_error"],
                    "created_at": row["created_at"].isoformat(),
                    "delivered_at": row["delivered_at"].isoformat()
                    if row["delivered_at"]
                    else None,
                    "next_attempt_at": row["next_attempt_at"].isoformat() if pending else None,
                }
            )
        return described

    # --- intake ---------------------------------------------------------------------------

    async def on_event(self, message: Message) -> None:
        """Record one delivery for a payment outcome, once per bus message."""
        if message.topic not in DATA_FIELDS:
            return
        async with self.kernel.db.transaction() as session:
            found = await store.endpoint(session, message.tenant_id)
            if found is None or not found.enabled:
                return  # nobody to tell, so nothing to remember (no inbox row either)
            if not await first_time(session, GROUP, message.id):
                return
            payment_id = str(getattr(message, "payment_id", ""))
            payment = await payments_store.payment(session, payment_id)
            await store.add_delivery(
                session,
                tenant_id=message.tenant_id,
                event_id=message.id,
                event_type=message.type,
                payment_id=payment_id,
                payload=encode(event_payload(message, payment)),
            )
        self.notify()

    # --- delivery -------------------------------------------------------------------------

    def notify(self) -> None:
        """Deliver now rather than at the next poll."""
        self._wakeup.set()

    def _retry_delay(self, attempts: int) -> float:
        delay = backoff(attempts, self.delays)
        # Spread retries so endpoints coming back are not hit by every tenant at once.
        return delay * random.uniform(1 - self.jitter, 1 + self.jitter) if self.jitter else delay

    async def deliver_once(self) -> int:
        """Claim one batch of due deliveries and send them; returns how many were claimed."""
        async with self.kernel.db.transaction() as session:
            jobs, _ = await store.claim_due(
                session, limit=self.batch_size, lease=self.lease, max_attempts=self.max_attempts
            )
            targets = await store.endpoints_of(session, {job.tenant_id for job in jobs})
        outcomes = await asyncio.gather(
            *(self._deliver(job, targets.get(job.tenant_id)) for job in jobs),
            return_exceptions=True,
        )
        for job, outcome in zip(jobs, outcomes, strict=True):
            if isinstance(outcome, Exception):
                # Its lease runs out and the row falls due again; the others stand.
                log.error(
                    "psp.webhook_delivery_failed",
                    event_id=job.event_id,
                    error=type(outcome).__name__,
                )
            elif isinstance(outcome, BaseException):
                raise outcome  # cancellation: the worker is stopping
        return len(jobs)

    async def _deliver(self, job: store.Job, target: store.Endpoint | None) -> None:
        if target is None or not target.enabled:
            # Removed or disabled after the event was recorded: nowhere to send it.
            async with self.kernel.db.transaction() as session:
                await store.record_attempt(
                    session,
                    job,
                    status=store.CANCELLED,
                    status_code=None,
                    error="endpoint_removed" if target is None else "endpoint_disabled",
                    next_attempt_at=None,
                )
            return
        status_code, error, final = await self._post(job, target)
        delivered = status_code is not None and 200 <= status_code < 300
        if delivered:
            status, next_at = store.DELIVERED, None
        elif final or job.attempts >= self.max_attempts:
            status, next_at = store.FAILED, None
        else:
            status = store.PENDING
            next_at = utcnow() + timedelta(seconds=self._retry_delay(job.attempts))
        if not delivered:
            log.warning(
                "psp.webhook_attempt_failed",
                tenant_id=job.tenant_id,
                event_id=job.event_id,
                attempt=job.attempts,
                status_code=status_code,
                error=error,
                gave_up=status == store.FAILED,
            )
        async with self.kernel.db.transaction() as session:
            await store.record_attempt(
                session,
                job,
                status=status,
                status_code=status_code,
                error=None if delivered else (error or f"http_{status_code}"),
                next_attempt_at=next_at,
            )

    async def _post(
        self, job: store.Job, target: store.Endpoint
    ) -> tuple[int | None, str | None, bool]:
        """One POST: (status code, None, False) when answered, (None, error class, final)
        when not; `final` means retrying cannot help (the target is refused)."""
        try:
            secret = self.kernel.vault.unseal(job.tenant_id, target.secret, SECRET_CONTEXT)
        except VaultError:
            # Sealed under a master key since retired: the admin must set the endpoint again.
            return None, "secret_unreadable", False
        try:
            # Resolved and checked now, sent to the checked address: no DNS rebinding.
            pinned = await vet_target(target.url, self.targets, self.resolve)
        except TargetRefused as refused:
            log.warning(
                "psp.webhook_target_refused",
                tenant_id=job.tenant_id,
                event_id=job.event_id,
                reason=refused.reason,
            )
            return None, "target_refused", True
        except TargetUnresolved:
            return None, "dns_error", False
        body = job.payload.encode()
        headers = {
            "Host": pinned.host_header,
            "Content-Type": "application/json",
            "User-Agent": "Transact-Webhooks/1",
            SIGNATURE_HEADER: sign(secret.decode(), body, int(time.time())),
            EVENT_ID_HEADER: job.event_id,
        }
        extensions = {"sni_hostname": pinned.sni_hostname} if pinned.sni_hostname else {}
        try:
            # httpx times each phase; a receiver trickling bytes is cut by this total.
            async with asyncio.timeout(self.timeout * 2):
                async with self._client().stream(
                    "POST", pinned.url, content=body, headers=headers, extensions=extensions
                ) as response:
                    # The answer's body is never read: its size and content are not ours.
                    return response.status_code, None, False
        except (httpx.HTTPError, httpx.InvalidURL, TimeoutError, OSError) as exc:
            return None, type(exc).__name__[:64], False

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout, connect=min(3.0, self.timeout)),
                follow_redirects=False,
                # No connection reuse: a connection is opened to the address checked for
                # this delivery, and one verified for one host name never serves another.
                limits=httpx.Limits(max_keepalive_connections=0),
                trust_env=False,  # no proxy from the environment between us and the check
            )
        return self._http

    async def prune(self) -> int:
        async with self.kernel.db.transaction() as session:
            return await store.prune(session, utcnow() - RETENTION)

    async def run(self) -> None:
        while True:
            self._wakeup.clear()  # before delivering, so a notify() meanwhile is not lost
            try:
                while await self.deliver_once() == self.batch_size:
                    pass
                if time.monotonic() >= self._next_prune:
                    self._next_prune = time.monotonic() + 3600.0
                    await self.prune()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a database blip must not end deliveries
                log.error("psp.webhook_worker_failed", error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self.poll_interval)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="psp-webhooks:deliver")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None


def build_webhooks(kernel: Kernel, webhooks: Webhooks | None = None) -> Service:
    """The webhook service: its API, its bus consumer and its delivery worker."""
    hooks = webhooks or Webhooks(kernel)
    service = Service(name=GROUP, routers=[build_router(kernel, hooks)])
    for topic in TOPICS:
        service.subscribe(topic, hooks.on_event, group=GROUP)
    service.on_start.append(hooks.start)
    service.on_stop.append(hooks.stop)
    return service
