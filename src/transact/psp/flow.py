"""The PSP adapter's use cases: authorize with failover, refund, capture, void, reconcile.

Charged at most once, by construction:
* every attempt is a row written *before* the call leaves, so a crash mid-call
  leaves evidence that reconciliation follows up;
* the provider gets our payment id as its reference and an idempotency key per
  attempt, so the same attempt sent twice charges once;
* we move to the next connector only when the answer proves nothing was charged;
  after a timeout or an ambiguous error we ask the same connector for the
  payment by our reference, and if even that cannot be answered the payment
  stays `submitted` for reconciliation, which never sends it again.

Cards kept for later (`PaymentRequested.save_card`): after an approval the
card, still in memory, is tokenized at the connector that approved it (or the
token that came back with the authorization is used); only that token, sealed,
with brand, BIN and last 4 is stored. A stored card is charged on the connector
that issued its token and nowhere else: there is no failover for it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import structlog
from sqlalchemy.exc import IntegrityError

from transact.contracts import Message, utcnow
from transact.contracts.money import check_money
from transact.contracts.payments import (
    AttemptSummary,
    PaymentAuthorized,
    PaymentCaptured,
    PaymentDeclined,
    PaymentFailed,
    PaymentPending,
    PaymentRefunded,
    PaymentRequested,
    PaymentVoided,
)
from transact.contracts.statements import (
    STATEMENT_PART_SIZE,
    Statement,
    StatementLine,
    StatementRequested,
)
from transact.kernel import Kernel, audit
from transact.kernel.db import add_to_outbox
from transact.kernel.errors import ApiError, VaultError
from transact.kernel.security import Principal
from transact.kernel.sensitive import Pan, SensitiveStr
from transact.psp import domain, store
from transact.psp.connectors import CONNECTORS, make
from transact.psp.connectors.base import (
    Card,
    Connector,
    DeclineCode,
    HttpCall,
    Interaction,
    Order,
    Outcome,
    PspResult,
    interaction_for,
)
from transact.psp.connectors.http import InProcess, send
from transact.psp.metrics import psp_metrics

log = structlog.get_logger("transact.psp")

DEFAULT_BASE_URLS = {
    "sandbox": "http://sandbox",
    "stripe": "https://api.stripe.com",
    "adyen": "https://checkout-test.adyen.com",
    "checkout": "https://api.sandbox.checkout.com",
}
STATUS_QUERIES = 3
# A reconciliation statement asks about this many payments at most, this many at a time.
STATEMENT_MAX_PAYMENTS = 5000
STATEMENT_CONCURRENCY = 8
# How long a payment may wait for its 3-D Secure challenge before it is failed.
PENDING_LIMIT = timedelta(hours=1)
CALL_TIMEOUT = 15.0
# Pauses before sending a refund, capture or void again (same idempotency key) after an
# answer that does not say whether the PSP did it.
AMBIGUOUS_RESENDS = (0.5, 2.0)
MODIFY_LOCK_SECONDS = CALL_TIMEOUT * (len(AMBIGUOUS_RESENDS) + 1) + sum(AMBIGUOUS_RESENDS) + 5
TOKEN_CONTEXT = b"psp-card-token"
TOKEN_OPERATIONS = frozenset({"tokenize", "keep_token"})
STORED_CARD_CHANNEL = "stored_card"
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_AMBIGUOUS = (httpx.TimeoutException, httpx.TransportError)


def action_url(action: Mapping[str, Any] | None) -> str | None:
    """Where a PSP's pending action (a 3-D Secure challenge) lives, in any provider's shape:
    Stripe `redirect_to_url.url`, Adyen `url`, Checkout.com `href`, the sandbox `url`."""
    if not action:
        return None
    nested = action.get("redirect_to_url")
    for value in (
        nested.get("url") if isinstance(nested, Mapping) else None,
        action.get("url"),
        action.get("href"),
    ):
        if isinstance(value, str) and value.startswith("https://") and len(value) <= 2048:
            return value
    return None


def _summary(connector: str, result: PspResult, latency_ms: int) -> AttemptSummary:
    """An attempt as its row will record it (see `_end_attempts`)."""
    code = result.decline_code.value if result.decline_code else None
    return AttemptSummary(
        connector=connector, outcome=result.outcome.value, latency_ms=latency_ms, decline_code=code
    )


def card_from_vault(raw: bytes) -> Card:
    """The vault's card payload (see `PaymentRequested`) as the connectors' `Card`."""
    try:
        values = json.loads(raw)
        expiry = str(values["expiry"])
        return Card(
            pan=Pan(str(values["pan"])),
            expiry_month=int(expiry[:2]),
            expiry_year=2000 + int(expiry[2:4]),
            cvv=SensitiveStr(str(values["cvv"])) if values.get("cvv") else None,
            holder=str(values["holder"]) if values.get("holder") else None,
            postcode=str(values["postcode"]) if values.get("postcode") else None,
        )
    except (ValueError, KeyError, TypeError):
        raise VaultError("the vault entry is not a card") from None


@dataclass(frozen=True)
class _Ended:
    """A PSP call's result, to be written to its attempt row in a later transaction."""

    seq: int
    result: PspResult
    latency_ms: int
    transcript: Any


@dataclass(frozen=True)
class KeptCard:
    """A card to store after an approval: the PSP's token (sealed when stored), and
    what may be displayed. Never the number, expiry or security code."""

    connector: str
    token: str
    brand: str | None
    bin: str
    last4: str
    created_by: str | None


@dataclass(frozen=True)
class Setup:
    """A tenant's PSP configuration: its routes, credentials and sale/auth mode."""

    routes: list[domain.Route]
    credentials: Mapping[str, Mapping[str, str]]
    capture: bool = True
    options: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


class Psp:
    def __init__(self, kernel: Kernel, sandbox_app: Any = None) -> None:
        self.kernel = kernel
        self._in_process = InProcess(sandbox_app) if sandbox_app is not None else None
        self._clients: dict[str, httpx.AsyncClient] = {}
        self.breaker = domain.BreakerPolicy()
        # Per connector: whether the last look at its failure count found one.
        self._failures_seen: dict[str, bool] = {}
        # Told how long each PSP call took (the benchmark separates PSP time from ours).
        self.observe_call: Callable[[HttpCall, float], None] | None = None
        self.metrics = psp_metrics(kernel.metrics)

    # --- plumbing ----------------------------------------------------------------------

    def _client(self, base_url: str) -> httpx.AsyncClient | InProcess:
        if base_url == DEFAULT_BASE_URLS["sandbox"] and self._in_process is not None:
            # The embedded default: the simulator answers in-process, no socket.
            return self._in_process
        client = self._clients.get(base_url)
        if client is None:
            connect = self.kernel.settings.psp_connect_timeout
            client = httpx.AsyncClient(
                base_url=base_url, timeout=httpx.Timeout(10.0, connect=connect)
            )
            self._clients[base_url] = client
        return client

    async def close(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    async def setup(self, tenant_id: str) -> Setup:
        async with self.kernel.db.transaction() as session:
            return await self._setup_in(session, tenant_id)

    async def _setup_in(self, session: Any, tenant_id: str) -> Setup:
        stored = await store.routes_of(session, tenant_id)
        if stored is None:
            # The sandbox only in demo mode: a real tenant without routes must not
            # have its customers' payments "approved" by a simulator.
            routes = [domain.Route("sandbox")] if self.kernel.settings.demo else []
            return Setup(routes, {})
        config, sealed = stored
        credentials: dict[str, dict[str, str]] = {}
        if sealed:
            opened = self.kernel.vault.unseal(tenant_id, sealed, b"psp-credentials")
            credentials = json.loads(opened)
        known = frozenset(CONNECTORS)
        return Setup(
            [domain.route_from_dict(r, known) for r in config["routes"]],
            credentials,
            capture=config.get("mode", "sale") == "sale",
            options=config.get("options", {}),
        )

    async def set_setup(self, principal: Principal, config: dict[str, Any]) -> dict[str, Any]:
        known = frozenset(CONNECTORS)
        raw_routes = config.get("routes")
        if not isinstance(raw_routes, list) or not raw_routes:
            raise domain.RouteError("routes must be a non-empty list")
        routes = [domain.route_from_dict(r, known) for r in raw_routes]
        mode = config.get("mode", "sale")
        if mode not in ("sale", "auth"):
            raise domain.RouteError("mode must be 'sale' or 'auth'")
        credentials = config.get("credentials") or {}
        options = config.get("options") or {}
        if not isinstance(credentials, dict) or not isinstance(options, dict):
            raise domain.RouteError("credentials and options map connector names to settings")
        for route in routes:
            try:
                make(
                    route.connector,
                    base_url=route.base_url or DEFAULT_BASE_URLS[route.connector],
                    credentials=credentials.get(route.connector, {}),
                    options=options.get(route.connector),
                )
            except ValueError as exc:
                raise domain.RouteError(str(exc)) from None
        sealed = (
            self.kernel.vault.seal(
                principal.tenant_id, json.dumps(credentials).encode(), b"psp-credentials"
            )
            if credentials
            else None
        )
        public = {"mode": mode, "routes": [r.to_dict() for r in routes], "options": options}
        async with self.kernel.db.transaction() as session:
            await store.set_routes(session, principal.tenant_id, public, sealed)
            await audit.append(
                session,
                action="psp.routes_changed",
                actor=principal.actor,
                tenant_id=principal.tenant_id,
                target=principal.tenant_id,
                details={**public, "credentials_for": sorted(credentials)},
            )
        return public

    def connector(self, setup: Setup, route: domain.Route) -> Connector:
        return make(
            route.connector,
            base_url=route.base_url or DEFAULT_BASE_URLS[route.connector],
            credentials=setup.credentials.get(route.connector, {}),
            options=setup.options.get(route.connector),
        )

    async def _breaker_open(self, connector: str) -> bool:
        failures = await self.kernel.cache.get(f"psp:breaker:{connector}")
        self._failures_seen[connector] = failures is not None
        is_open = failures is not None and int(failures) >= self.breaker.threshold
        self.metrics.circuit(connector, is_open)
        return is_open

    async def _breaker_record(self, connector: str, healthy: bool) -> None:
        key = f"psp:breaker:{connector}"
        if healthy:
            # A success resets the count, a cache round trip saved where the last look
            # (just before this call) found none to reset.
            if self._failures_seen.get(connector, True):
                await self.kernel.cache.delete(key)
                self._failures_seen[connector] = False
            self.metrics.circuit(connector, False)
        else:
            failures = await self.kernel.cache.incr(key, ttl=self.breaker.open_seconds)
            self._failures_seen[connector] = True
            self.metrics.circuit(connector, failures >= self.breaker.threshold)

    async def _call(
        self, connector: Connector, call: HttpCall, parse: Any
    ) -> tuple[PspResult, int, Any]:
        """Send one call; transport failures become results that say whether we charged."""
        started = time.perf_counter()
        try:
            # The in-process sandbox (no socket) has no timeouts of its own.
            async with asyncio.timeout(CALL_TIMEOUT):
                status, body = await send(self._client(connector.base_url), connector, call)
        except _NOT_SENT as exc:
            result = PspResult(
                Outcome.ERROR,
                decline_code=DeclineCode.UNAVAILABLE,
                message=type(exc).__name__,
                may_retry_elsewhere=True,
            )
            self._observe(connector, call, "unreachable", started)
            return result, domain.latency_ms(time.perf_counter() - started), None
        except (*_AMBIGUOUS, TimeoutError) as exc:
            result = PspResult(
                Outcome.ERROR,
                decline_code=DeclineCode.PROCESSING_ERROR,
                message=type(exc).__name__,
                may_retry_elsewhere=False,
            )
            self._observe(connector, call, "timeout", started)
            return result, domain.latency_ms(time.perf_counter() - started), None
        if self.observe_call is not None:
            self.observe_call(call, time.perf_counter() - started)
        parsed: PspResult = parse(status, body)
        self._observe(connector, call, parsed.outcome.value, started)
        return parsed, domain.latency_ms(time.perf_counter() - started), body

    def _observe(self, connector: Connector, call: HttpCall, outcome: str, started: float) -> None:
        # The operation from the path's shape, never the path (it holds references).
        operation = "status" if call.method == "GET" else "request"
        self.metrics.call(connector.name, operation, outcome, time.perf_counter() - started)

    # --- authorize ---------------------------------------------------------------------

    def _way_back(self, channel: str) -> str | None:
        """Where a PSP sends a customer after 3-D Secure: the hosted page's public return
        path, whose page session (a cookie) knows which payment came back. Phone and
        stored-card payments have no customer at a browser."""
        base = self.kernel.settings.public_url
        return f"{base.rstrip('/')}/pay/return" if channel == "link" and base else None

    async def authorize(self, request: PaymentRequested) -> None:
        """Authorize with failover, in as few transactions as the rules allow.

        One transaction records the payment, reads the routing and starts the first
        attempt; each PSP call's result is written in the next transaction (the one
        that starts another attempt, or the one that records the outcome). An
        attempt row is always committed before its call leaves; a crash in between
        leaves it `sending`, which reconciliation follows up by asking.
        """
        try:
            card: Card | None = card_from_vault(
                await self.kernel.vault.take(request.tenant_id, request.vault_ref)
            )
        except VaultError:
            card = None  # used already (a redelivery), expired, or never stored
        facts = domain.PaymentFacts(
            request.amount, request.currency, request.brand, request.channel
        )
        finished = False
        try:
            async with self.kernel.db.transaction() as session:
                await store.insert_payment(
                    session,
                    status=domain.PaymentStatus.SUBMITTED.value,
                    **self._payment_values(request),
                )
                setup = await self._setup_in(session, request.tenant_id)
                routes = domain.candidates(setup.routes, facts, random.random())
                first = await self._next_route(routes, 0)
                if card is None or first is None:
                    payment = await store.payment(session, request.payment_id, lock=True)
                    assert payment is not None
                    await self._finish_in(
                        session,
                        payment,
                        PspResult(
                            Outcome.ERROR,
                            decline_code=DeclineCode.PROCESSING_ERROR,
                            message="card details unavailable"
                            if card is None
                            else "no connector takes this payment",
                        ),
                        connector=None,
                        attempts=0,
                    )
                    finished = True
                    return
                index, connector = first[0], self.connector(setup, first[1])
                key = f"{request.idempotency_key}:{connector.name}"
                seq = await store.start_attempt(
                    session, request.payment_id, "authorize", connector.name, key, seq=1
                )
        except IntegrityError:
            return  # the payment is known already: a redelivery
        finally:
            if finished:
                self.kernel.relay.notify()  # the outcome was recorded at once
        order = Order(
            reference=request.payment_id,
            amount=request.amount,
            currency=request.currency,
            idempotency_key=request.idempotency_key,
            capture=setup.capture,
            card=card,
            description=request.reference,
            # A card given over the phone is a telephone order (MOTO); a link is e-commerce.
            interaction=interaction_for(request.channel),
            store=request.save_card,
            shopper_reference=request.payment_id if request.save_card else None,
            return_url=self._way_back(request.channel),
        )
        unrecorded: list[_Ended] = []
        tried = 1
        # What the attempt rows will say, so the outcome need not read them back; None
        # once a status query is involved (it may change what a row says).
        summaries: list[AttemptSummary] | None = []
        while True:
            keyed = dataclasses.replace(order, idempotency_key=key)
            call = connector.authorize_call(keyed)
            result, latency, body = await self._call(connector, call, connector.parse_authorize)
            unrecorded.append(_Ended(seq, result, latency, self._transcript(connector, call, body)))
            if summaries is not None:
                summaries.append(_summary(connector.name, result, latency))
            last: PspResult = result
            next_step = domain.after_attempt(result)
            # A timeout or refusal counts against the PSP; our own invalid request does not.
            await self._breaker_record(
                connector.name,
                next_step is domain.Next.DONE or result.decline_code is DeclineCode.INVALID_REQUEST,
            )
            if next_step is domain.Next.ASK_STATUS:
                summaries = None
                # No answer at all (a timeout, a dropped connection): the PSP may still be
                # working on the charge, so "not found" now would prove nothing.
                known = await self._ask_status(
                    request.payment_id, connector, may_be_in_flight=body is None
                )
                if known is None:
                    # Unknown whether it charged: never another PSP; reconciliation decides.
                    await self._record_ends(request.payment_id, unrecorded)
                    log.warning(
                        "psp.outcome_unknown",
                        payment_id=request.payment_id,
                        connector=connector.name,
                    )
                    return
                last = known
                if known.outcome is not Outcome.ERROR:
                    break
            elif next_step is domain.Next.DONE:
                break
            following = await self._next_route(routes, index + 1)
            if following is None:
                break
            index, connector = following[0], self.connector(setup, following[1])
            key = f"{request.idempotency_key}:{connector.name}"
            async with self.kernel.db.transaction() as session:
                await self._end_attempts(session, request.payment_id, unrecorded)
                seq = await store.start_attempt(
                    session, request.payment_id, "authorize", connector.name, key
                )
            tried += 1
        kept = None
        if request.save_card and last.outcome is Outcome.APPROVED:
            await self._record_ends(request.payment_id, unrecorded)
            kept = await self._keep_card(
                request.payment_id, connector, card, last, request.brand, request.agent_id
            )
        await self._finish(
            request.payment_id,
            last,
            connector=connector.name,
            captured=setup.capture,
            kept=kept,
            ended=unrecorded,
            attempts=tried,
            tried=summaries,
        )

    async def _next_route(
        self, routes: list[domain.Route], start: int
    ) -> tuple[int, domain.Route] | None:
        """The first route from `start` on whose circuit is closed."""
        for index in range(start, len(routes)):
            if not await self._breaker_open(routes[index].connector):
                return index, routes[index]
        return None

    @staticmethod
    def _payment_values(request: PaymentRequested) -> dict[str, Any]:
        return {
            "id": request.payment_id,
            "tenant_id": request.tenant_id,
            "capture_id": request.capture_id,
            "amount": request.amount,
            "currency": request.currency,
            "reference": request.reference,
            "channel": request.channel,
            "agent_id": request.agent_id,
            "brand": request.brand,
        }

    @staticmethod
    def _transcript(connector: Connector, call: HttpCall, body: Any) -> Any:
        return connector.scrub(
            {
                "request": {
                    "method": call.method,
                    "path": call.path,
                    "json": call.json,
                    "form": call.form,
                },
                "response": body,
            }
        )

    async def _end_attempts(self, session: Any, payment_id: str, ended: list[_Ended]) -> None:
        """Write the results of attempts whose calls are done (and forget them)."""
        for attempt in ended:
            result = attempt.result
            await store.finish_attempt(
                session,
                payment_id,
                attempt.seq,
                outcome=result.outcome.value,
                decline_code=result.decline_code.value if result.decline_code else None,
                http_status=result.http_status,
                psp_reference=result.psp_reference,
                latency_ms=attempt.latency_ms,
                transcript=attempt.transcript,
            )
        ended.clear()

    async def _record_ends(self, payment_id: str, ended: list[_Ended]) -> None:
        if ended:
            async with self.kernel.db.transaction() as session:
                await self._end_attempts(session, payment_id, ended)

    async def _claim(self, request: PaymentRequested) -> bool:
        """Record the payment; False when it is already known (a redelivery)."""
        return await self._claim_row(**self._payment_values(request))

    async def _claim_row(self, *, audit_entry: dict[str, Any] | None = None, **values: Any) -> bool:
        try:
            async with self.kernel.db.transaction() as session:
                await store.insert_payment(
                    session, status=domain.PaymentStatus.SUBMITTED.value, **values
                )
                if audit_entry is not None:
                    await audit.append(session, **audit_entry)
        except IntegrityError:
            return False
        return True

    async def _attempt(self, payment_id: str, connector: Connector, order: Order) -> PspResult:
        key = f"{order.idempotency_key}:{connector.name}"
        keyed = dataclasses.replace(order, idempotency_key=key)
        if order.card is None and order.token is not None:
            call = connector.charge_token_call(keyed)
        else:
            call = connector.authorize_call(keyed)
        return await self._recorded(
            payment_id, "authorize", connector, call, connector.parse_authorize, key
        )

    async def _recorded(
        self,
        payment_id: str,
        operation: str,
        connector: Connector,
        call: HttpCall,
        parse: Callable[[int, Any], PspResult],
        key: str,
    ) -> PspResult:
        """Send one call for a payment with its attempt row written first, then completed."""
        async with self.kernel.db.transaction() as session:
            seq = await store.start_attempt(session, payment_id, operation, connector.name, key)
        result, latency, body = await self._call(connector, call, parse)
        # Tokenization answers are the token itself: kept sealed, never in a transcript.
        transcript = (
            None if operation in TOKEN_OPERATIONS else self._transcript(connector, call, body)
        )
        async with self.kernel.db.transaction() as session:
            await self._end_attempts(
                session, payment_id, [_Ended(seq, result, latency, transcript)]
            )
        return result

    async def _keep_card(
        self,
        payment_id: str,
        connector: Connector,
        card: Card,
        approved: PspResult,
        brand: str | None,
        created_by: str | None,
    ) -> KeptCard | None:
        """The approving connector's token for `card`, or None when it could not be had.

        A failure here never touches the payment: it is approved, only not kept.
        """
        token = approved.token
        if token is None:
            key = f"{payment_id}:tokenize:{connector.name}"
            call = connector.tokenize_call(card, payment_id, key)
            got = await self._recorded(
                payment_id, "tokenize", connector, call, connector.parse_tokenize, key
            )
            token = got.token if got.outcome is Outcome.APPROVED else None
        if token is not None:
            key = f"{payment_id}:keep:{connector.name}"
            follow = connector.keep_token_call(token, payment_id, key)
            if follow is not None:
                kept = await self._recorded(
                    payment_id, "keep_token", connector, follow, connector.parse_keep_token, key
                )
                token = kept.token if kept.outcome is Outcome.APPROVED else None
        if token is None:
            log.warning("psp.card_not_kept", payment_id=payment_id, connector=connector.name)
            return None
        return KeptCard(
            connector=connector.name,
            token=token,
            brand=brand,
            bin=card.pan.bin,
            last4=card.pan.last4,
            created_by=created_by,
        )

    async def _ask_status(
        self, payment_id: str, connector: Connector, *, may_be_in_flight: bool = False
    ) -> PspResult | None:
        """What the PSP knows of our payment: a result, or None when it cannot tell us.

        `may_be_in_flight`: our request got no answer, so the PSP may still be processing
        it (a latency spike past our timeout) and record the charge after we asked; then
        an unknown reference is not proof that nothing was charged."""
        if not getattr(connector, "supports_status_query", True):
            return None
        for _ in range(STATUS_QUERIES):
            call = connector.status_call(payment_id, None)
            result, _, _ = await self._call(connector, call, connector.parse_status)
            if result.outcome is not Outcome.ERROR:
                return result
            if (
                result.decline_code is DeclineCode.NOT_FOUND
                and result.may_retry_elsewhere
                and not may_be_in_flight
            ):
                # The connector vouches that an unknown reference was never charged (a
                # lagging search index, like Stripe's, cannot vouch: that stays unknown).
                return PspResult(
                    Outcome.ERROR,
                    decline_code=DeclineCode.UNAVAILABLE,
                    message="not received by the PSP",
                    may_retry_elsewhere=True,
                )
        return None

    async def _finish(
        self,
        payment_id: str,
        result: PspResult,
        *,
        connector: str | None,
        captured: bool = True,
        kept: KeptCard | None = None,
        card_id: str | None = None,
        ended: list[_Ended] | None = None,
        attempts: int | None = None,
        tried: list[AttemptSummary] | None = None,
    ) -> None:
        """Store the outcome and publish it, once. `kept`: a card to store with an approval;
        `card_id`: the stored card the payment was charged to; `ended`: attempt results
        not written yet, written in the same transaction; `tried`: every authorization
        attempt of the payment, when the caller knows them."""
        async with self.kernel.db.transaction() as session:
            if ended:
                await self._end_attempts(session, payment_id, ended)
            payment = await store.payment(session, payment_id, lock=True)
            if payment is None:
                return
            await self._finish_in(
                session,
                payment,
                result,
                connector=connector,
                captured=captured,
                kept=kept,
                card_id=card_id,
                attempts=attempts,
                tried=tried,
            )
        self.kernel.relay.notify()

    async def _finish_in(
        self,
        session: Any,
        payment: store.Payment,
        result: PspResult,
        *,
        connector: str | None,
        captured: bool = True,
        kept: KeptCard | None = None,
        card_id: str | None = None,
        attempts: int | None = None,
        tried: list[AttemptSummary] | None = None,
    ) -> None:
        """`_finish` in the caller's transaction, `payment` read (locked) in it.
        `attempts`, `tried`: the authorization attempts made, when the caller knows."""
        payment_id = payment.id
        if payment.status != domain.PaymentStatus.SUBMITTED:
            return
        if attempts is None:
            attempts = await store.count_attempts(session, payment_id, "authorize")
        code = result.decline_code.value if result.decline_code else None
        if kept is not None and result.outcome is Outcome.APPROVED:
            card_id = await self._store_card(session, payment, kept)
        fields = {
            "payment_id": payment_id,
            "connector": connector,
            "psp_reference": result.psp_reference,
            "decline_code": code,
            "attempts": attempts,
            "tenant_id": payment.tenant_id,
            "correlation_id": payment_id,
            "stored_card_id": card_id,
            **await self._reported(session, payment, tried),
        }
        if result.outcome is Outcome.PENDING:
            await self._pending(session, payment, result, connector, attempts)
            return
        event: Message
        amounts: dict[str, int] = {}
        if result.outcome is Outcome.APPROVED:
            status = domain.PaymentStatus.AUTHORIZED
            amount = result.amount or payment.amount
            event = PaymentAuthorized(**fields)
            amounts = {
                "authorized_amount": amount,
                "captured_amount": amount if captured else 0,
            }
        elif result.outcome is Outcome.DECLINED:
            status, event = domain.PaymentStatus.DECLINED, PaymentDeclined(**fields)
        else:
            status, event = domain.PaymentStatus.FAILED, PaymentFailed(**fields)
        await store.save_payment(
            session,
            payment_id,
            status=status.value,
            connector=connector,
            psp_reference=result.psp_reference,
            decline_code=code,
            attempts=attempts,
            **amounts,
        )
        await add_to_outbox(session, event)
        await audit.append(
            session,
            action=f"payment.{status.value}",
            actor="service:psp",
            tenant_id=payment.tenant_id,
            target=payment_id,
            details={"connector": connector, "decline_code": code, "attempts": attempts},
        )

    @staticmethod
    async def _reported(
        session: Any, payment: store.Payment, tried: list[AttemptSummary] | None
    ) -> dict[str, Any]:
        """What reporting aggregates an outcome by: the payment's facts and its attempts
        (read from their rows unless given)."""
        if tried is None:
            summary = await store.authorize_summary(session, payment.id)
            tried = [AttemptSummary(**attempt) for attempt in summary]
        timed = [t.latency_ms for t in tried if t.latency_ms is not None]
        return {
            "amount": payment.amount,
            "currency": payment.currency,
            "channel": payment.channel,
            "agent_id": payment.agent_id,
            "brand": payment.brand,
            "latency_ms": sum(timed) if timed else None,
            "failovers": max(0, len({t.connector for t in tried}) - 1),
            "tried": tried,
        }

    async def _pending(
        self,
        session: Any,
        payment: store.Payment,
        result: PspResult,
        connector: str | None,
        attempts: int,
    ) -> None:
        """The PSP has not decided (3-D Secure, or still processing): the payment stays
        `submitted`, announced once; a status query (reconciliation) ends it later."""
        if payment.psp_reference is not None and payment.psp_reference == result.psp_reference:
            return  # announced already; still waiting
        action = (
            "authentication_required"
            if result.decline_code is DeclineCode.AUTHENTICATION_REQUIRED
            else "processing"
        )
        await store.save_payment(
            session,
            payment.id,
            connector=connector,
            psp_reference=result.psp_reference,
            attempts=attempts,
        )
        await add_to_outbox(
            session,
            PaymentPending(
                tenant_id=payment.tenant_id,
                correlation_id=payment.id,
                payment_id=payment.id,
                connector=connector,
                psp_reference=result.psp_reference,
                attempts=attempts,
                action=action,
                action_url=action_url(result.action),
            ),
        )
        await audit.append(
            session,
            action="payment.pending",
            actor="service:psp",
            tenant_id=payment.tenant_id,
            target=payment.id,
            details={"connector": connector, "action": action, "attempts": attempts},
        )

    async def _store_card(self, session: Any, payment: store.Payment, kept: KeptCard) -> str:
        card_id = "card_" + secrets.token_hex(12)
        await store.add_stored_card(
            session,
            id=card_id,
            tenant_id=payment.tenant_id,
            connector=kept.connector,
            token=self.kernel.vault.seal(payment.tenant_id, kept.token.encode(), TOKEN_CONTEXT),
            brand=kept.brand,
            bin=kept.bin,
            last4=kept.last4,
            payment_id=payment.id,
            created_by=kept.created_by,
        )
        await audit.append(
            session,
            action="card.saved",
            actor="service:psp",
            tenant_id=payment.tenant_id,
            target=card_id,
            details={
                "payment_id": payment.id,
                "connector": kept.connector,
                "brand": kept.brand,
                "last4": kept.last4,
            },
        )
        return card_id

    # --- stored cards ----------------------------------------------------------------------

    async def stored_cards(
        self, principal: Principal, limit: int = 100, before: str | None = None
    ) -> list[store.StoredCard]:
        async with self.kernel.db.transaction() as session:
            return await store.stored_cards_of(session, principal.tenant_id, limit, before)

    async def _stored_card(self, principal: Principal, card_id: str) -> store.StoredCard:
        async with self.kernel.db.transaction() as session:
            card = await store.stored_card(session, card_id)
        if card is None or card.tenant_id != principal.tenant_id:
            raise ApiError(404, "not_found", "no such stored card")
        return card

    async def forget_card(self, principal: Principal, card_id: str) -> None:
        """Delete a stored card: its token is gone from here (the PSP keeps its copy)."""
        card = await self._stored_card(principal, card_id)
        async with self.kernel.db.transaction() as session:
            if not await store.delete_stored_card(session, card.id):
                raise ApiError(404, "not_found", "no such stored card")
            await audit.append(
                session,
                action="card.deleted",
                actor=principal.actor,
                tenant_id=card.tenant_id,
                target=card.id,
                details={"connector": card.connector, "last4": card.last4},
            )

    async def charge_card(
        self,
        principal: Principal,
        card_id: str,
        amount: int,
        currency: str,
        reference: str,
        idempotency_key: str | None = None,
    ) -> store.Payment:
        """Charge a stored card, merchant-initiated, on the connector that issued its token.

        With an idempotency key the payment id derives from it, so a retry after a
        crash finds the same payment (and the PSP the same request) instead of
        charging again. A token is bound to its PSP: no failover, ever.
        """
        problem = check_money(amount, currency)
        if problem:
            code = "invalid_amount" if "amount" in problem else "invalid_currency"
            raise ApiError(422, code, problem)
        card = await self._stored_card(principal, card_id)
        setup = await self.setup(card.tenant_id)
        route = next((r for r in setup.routes if r.connector == card.connector), None)
        if route is None:
            raise ApiError(
                409,
                "connector_unavailable",
                f"this card's token was issued by {card.connector}, which is no longer "
                "in the tenant's routing; a token can be charged only there",
            )
        try:
            connector = self.connector(setup, route)
        except ValueError as exc:
            raise ApiError(409, "connector_unavailable", str(exc)) from None
        if await self._breaker_open(connector.name):
            raise ApiError(
                503, "psp_unavailable", f"{connector.name} is failing; retry the charge later"
            )
        if idempotency_key is not None:
            seed = f"{card.tenant_id}\0{card.id}\0{idempotency_key}".encode()
            payment_id = "pay_" + hashlib.sha256(seed).hexdigest()[:24]
        else:
            payment_id = "pay_" + secrets.token_hex(12)
        claimed = await self._claim_row(
            id=payment_id,
            tenant_id=card.tenant_id,
            capture_id=payment_id,
            amount=amount,
            currency=currency,
            reference=reference,
            channel=STORED_CARD_CHANNEL,
            agent_id=principal.id if principal.kind == "user" else None,
            brand=card.brand,
            audit_entry={
                "action": "card.charged",
                "actor": principal.actor,
                "tenant_id": card.tenant_id,
                "target": card.id,
                "details": {"payment_id": payment_id, "amount": amount, "currency": currency},
            },
        )
        if not claimed:
            # The same key after a crash: whatever is known of that one payment.
            return await self._owned(principal, payment_id)
        token = self.kernel.vault.unseal(card.tenant_id, card.token, TOKEN_CONTEXT).decode()
        order = Order(
            reference=payment_id,
            amount=amount,
            currency=currency,
            idempotency_key=f"{payment_id}:authorize",
            capture=setup.capture,
            token=token,
            description=reference,
            interaction=Interaction.MERCHANT_INITIATED,
        )
        result = await self._attempt(payment_id, connector, order)
        next_step = domain.after_attempt(result)
        await self._breaker_record(
            connector.name,
            next_step is domain.Next.DONE or result.decline_code is DeclineCode.INVALID_REQUEST,
        )
        if next_step is domain.Next.ASK_STATUS:
            known = await self._ask_status(payment_id, connector)
            if known is None:
                log.warning("psp.outcome_unknown", payment_id=payment_id, connector=connector.name)
                return await self._owned(principal, payment_id)  # reconciliation decides
            result = known
        # TRY_NEXT (provably not charged) ends here too: the token works nowhere else.
        await self._finish(
            payment_id, result, connector=connector.name, captured=setup.capture, card_id=card.id
        )
        async with self.kernel.db.transaction() as session:
            await store.used_stored_card(session, card.id)
        return await self._owned(principal, payment_id)

    # --- reconciliation ------------------------------------------------------------------

    # --- statements (reporting's reconciliation) -----------------------------------------

    async def statement(self, request: StatementRequested) -> None:
        """Ask the providers about the tenant's payments of a period and publish their
        answers (`psp.statement`, in parts). Read-only at the provider: a status query
        per payment. A redelivered request asks again; the answer replaces the last."""
        async with self.kernel.db.transaction() as session:
            found = await store.created_between(
                session,
                request.tenant_id,
                request.period_from,
                request.period_to,
                STATEMENT_MAX_PAYMENTS,
            )
        setup = await self.setup(request.tenant_id)
        gate = asyncio.Semaphore(STATEMENT_CONCURRENCY)

        async def line(payment: store.Payment) -> StatementLine:
            async with gate:
                return await self._statement_line(setup, payment)

        lines = await asyncio.gather(*(line(p) for p in found))
        parts = [
            lines[i : i + STATEMENT_PART_SIZE] for i in range(0, len(lines), STATEMENT_PART_SIZE)
        ] or [[]]
        async with self.kernel.db.transaction() as session:
            for number, part in enumerate(parts, start=1):
                await add_to_outbox(
                    session,
                    Statement(
                        tenant_id=request.tenant_id,
                        correlation_id=request.request_id,
                        request_id=request.request_id,
                        part=number,
                        last=number == len(parts),
                        lines=part,
                    ),
                )
        self.kernel.relay.notify()

    async def _statement_line(self, setup: Setup, payment: store.Payment) -> StatementLine:
        ours = {"ours_status": payment.status, "ours_amount": payment.amount}
        if payment.connector is None:
            # Never sent anywhere: no provider can know it.
            return StatementLine(payment_id=payment.id, connector="", found=False, **ours)
        route = next(
            (r for r in setup.routes if r.connector == payment.connector),
            domain.Route(payment.connector),
        )
        connector = self.connector(setup, route)
        known = await self._ask_status(payment.id, connector)
        if known is None:
            return StatementLine(
                payment_id=payment.id, connector=connector.name, found=True, **ours
            )
        if known.outcome is Outcome.ERROR and known.may_retry_elsewhere:
            # `_ask_status` says so only when the provider vouches it holds nothing.
            return StatementLine(
                payment_id=payment.id, connector=connector.name, found=False, **ours
            )
        return StatementLine(
            payment_id=payment.id,
            connector=connector.name,
            found=True,
            status=known.outcome.value,
            psp_reference=known.psp_reference,
            amount=known.amount,
            refunded=known.refunded,
            **ours,
        )

    async def reconcile(self, older_than_seconds: float = 30.0) -> int:
        """Resolve payments left `submitted` by asking the PSP last tried; never resend.

        That includes payments waiting for 3-D Secure: asked again each time until
        the PSP decides, failed after PENDING_LIMIT."""
        cutoff = utcnow() - timedelta(seconds=older_than_seconds)
        async with self.kernel.db.transaction() as session:
            stuck = await store.stuck(session, cutoff)
        resolved = 0
        for payment in stuck:
            async with self.kernel.db.transaction() as session:
                tried = await store.attempts_of(session, payment.id)
            if not tried:
                # The card was taken but nothing was sent: it is gone, so is the payment.
                await self._finish(
                    payment.id,
                    PspResult(
                        Outcome.ERROR,
                        decline_code=DeclineCode.PROCESSING_ERROR,
                        message="interrupted before any PSP was called",
                    ),
                    connector=None,
                )
                resolved += 1
                continue
            last = tried[-1]
            setup = await self.setup(payment.tenant_id)
            route = next(
                (r for r in setup.routes if r.connector == last["connector"]),
                domain.Route(last["connector"]),
            )
            connector = self.connector(setup, route)
            known = await self._ask_status(payment.id, connector)
            if known is None:
                continue  # ask again next time
            if known.outcome is Outcome.PENDING and utcnow() - payment.created_at > PENDING_LIMIT:
                # A challenge nobody completed: a pending payment holds no money.
                known = PspResult(
                    Outcome.ERROR,
                    known.psp_reference,
                    DeclineCode.AUTHENTICATION_REQUIRED,
                    "never authenticated",
                )
            await self._finish(payment.id, known, connector=connector.name, captured=setup.capture)
            resolved += 1
        return resolved

    # --- after the authorization -----------------------------------------------------------

    async def refund(
        self, principal: Principal, payment_id: str, amount: int | None
    ) -> store.Payment:
        async def check(payment: store.Payment, balance: domain.Balance) -> int:
            if payment.status not in (
                domain.PaymentStatus.AUTHORIZED,
                domain.PaymentStatus.PARTIALLY_REFUNDED,
            ):
                raise ApiError(409, "not_refundable", f"the payment is {payment.status}")
            wanted = balance.refundable() if amount is None else amount
            balance.check_refund(wanted)
            return wanted

        return await self._modify(principal, payment_id, "refund", check)

    async def capture(
        self, principal: Principal, payment_id: str, amount: int | None
    ) -> store.Payment:
        async def check(payment: store.Payment, balance: domain.Balance) -> int:
            if payment.status != domain.PaymentStatus.AUTHORIZED:
                raise ApiError(409, "not_capturable", f"the payment is {payment.status}")
            wanted = balance.authorized - balance.captured if amount is None else amount
            balance.check_capture(wanted)
            return wanted

        return await self._modify(principal, payment_id, "capture", check)

    async def void(self, principal: Principal, payment_id: str) -> store.Payment:
        async def check(payment: store.Payment, balance: domain.Balance) -> int:
            if payment.status != domain.PaymentStatus.AUTHORIZED or balance.captured:
                raise ApiError(
                    409,
                    "not_voidable",
                    "only an authorization nothing was captured from can be voided",
                )
            return 0

        return await self._modify(principal, payment_id, "void", check)

    async def _modify(
        self,
        principal: Principal,
        payment_id: str,
        operation: str,
        check: Callable[[store.Payment, domain.Balance], Awaitable[int]],
    ) -> store.Payment:
        """One refund, capture or void: checked, sent once, recorded, announced.

        Operations on one payment run one at a time (a lock in the cache, so across
        processes too): two refunds checked at once could together exceed the capture.
        """
        lock = f"psp:modify:{payment_id}"
        if not await self.kernel.cache.set_if_absent(lock, b"1", ttl=MODIFY_LOCK_SECONDS):
            raise ApiError(
                409,
                "operation_in_progress",
                "another operation on this payment is running; retry shortly",
            )
        try:
            return await self._modify_locked(principal, payment_id, operation, check)
        finally:
            await self.kernel.cache.delete(lock)

    async def _modify_locked(
        self,
        principal: Principal,
        payment_id: str,
        operation: str,
        check: Callable[[store.Payment, domain.Balance], Awaitable[int]],
    ) -> store.Payment:
        payment = await self._owned(principal, payment_id)
        balance = domain.Balance(
            payment.authorized_amount,
            payment.captured_amount,
            payment.refunded_amount,
            voided=payment.status == domain.PaymentStatus.VOIDED,
        )
        amount = await check(payment, balance)
        if payment.connector is None or payment.psp_reference is None:
            raise ApiError(409, f"not_{operation}able", "the payment has no PSP reference")
        setup = await self.setup(payment.tenant_id)
        route = next(
            (r for r in setup.routes if r.connector == payment.connector),
            domain.Route(payment.connector),
        )
        connector = self.connector(setup, route)
        async with self.kernel.db.transaction() as session:
            seq = await store.next_seq(session, payment_id)
            key = f"{payment_id}:{operation}:{seq}"
            await store.start_attempt(session, payment_id, operation, connector.name, key)
        if operation == "refund":
            call = connector.refund_call(payment.psp_reference, amount, payment.currency, key)
            parse = connector.parse_refund
        elif operation == "capture":
            call = connector.capture_call(payment.psp_reference, amount, payment.currency, key)
            parse = connector.parse_capture
        else:
            call = connector.void_call(payment.psp_reference, key)
            parse = connector.parse_void
        result, latency, _ = await self._call(connector, call, parse)
        for pause in AMBIGUOUS_RESENDS:
            if result.outcome is not Outcome.ERROR or result.may_retry_elsewhere:
                break
            # No answer, or a 5xx: the PSP may have done it. The same request under the
            # same idempotency key is answered with what it did, or done now, once.
            await asyncio.sleep(pause)
            result, latency, _ = await self._call(connector, call, parse)
        async with self.kernel.db.transaction() as session:
            # Its own transaction: a refused operation is still an attempt on record.
            await store.finish_attempt(
                session,
                payment_id,
                seq,
                outcome=result.outcome.value,
                decline_code=result.decline_code.value if result.decline_code else None,
                http_status=result.http_status,
                latency_ms=latency,
                psp_reference=result.psp_reference,
            )
        if result.outcome is Outcome.ERROR and not result.may_retry_elsewhere:
            log.warning(
                "psp.modification_unknown",
                payment_id=payment_id,
                operation=operation,
                connector=connector.name,
                http_status=result.http_status,
            )
            raise ApiError(
                502,
                f"{operation}_outcome_unknown",
                f"the PSP did not say whether it did the {operation}; check with the PSP "
                "before asking again",
            )
        if result.outcome not in (Outcome.APPROVED, Outcome.PENDING):
            raise ApiError(
                502,
                f"{operation}_failed",
                f"the PSP did not accept the {operation} ({result.decline_code})",
            )
        async with self.kernel.db.transaction() as session:
            current = await store.payment(session, payment_id, lock=True)
            assert current is not None
            event = await self._apply(
                session, current, operation, amount, connector.name, result.psp_reference
            )
            await add_to_outbox(session, event)
            await audit.append(
                session,
                action=f"payment.{operation}",
                actor=principal.actor,
                tenant_id=payment.tenant_id,
                target=payment_id,
                details={"amount": amount, "connector": connector.name},
            )
        self.kernel.relay.notify()
        return await self._owned(principal, payment_id)

    async def _apply(
        self,
        session: Any,
        current: store.Payment,
        operation: str,
        amount: int,
        connector: str,
        psp_reference: str | None,
    ) -> Message:
        common = {
            "tenant_id": current.tenant_id,
            "correlation_id": current.id,
            "payment_id": current.id,
            "connector": connector,
            "psp_reference": psp_reference,
        }
        if operation == "refund":
            total = current.refunded_amount + amount
            status = domain.Balance(
                current.authorized_amount, current.captured_amount, current.refunded_amount
            ).status_after_refund(amount)
            await store.save_payment(
                session, current.id, refunded_amount=total, status=status.value
            )
            return PaymentRefunded(
                **common,
                amount=amount,
                refunded_total=total,
                fully=status is domain.PaymentStatus.REFUNDED,
            )
        if operation == "capture":
            total = current.captured_amount + amount
            await store.save_payment(session, current.id, captured_amount=total)
            return PaymentCaptured(**common, amount=amount, captured_total=total)
        await store.save_payment(session, current.id, status=domain.PaymentStatus.VOIDED.value)
        return PaymentVoided(**common)

    async def _owned(self, principal: Principal, payment_id: str) -> store.Payment:
        async with self.kernel.db.transaction() as session:
            payment = await store.payment(session, payment_id)
        if payment is None or not principal.may_read(payment.tenant_id, payment.agent_id):
            raise ApiError(404, "not_found", "no such payment")
        return payment
