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
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import structlog
from sqlalchemy.exc import IntegrityError

from transact.contracts import Message, utcnow
from transact.contracts.payments import (
    PaymentAuthorized,
    PaymentCaptured,
    PaymentDeclined,
    PaymentFailed,
    PaymentRefunded,
    PaymentRequested,
    PaymentVoided,
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
    Order,
    Outcome,
    PspResult,
)
from transact.psp.connectors.http import send

log = structlog.get_logger("transact.psp")

DEFAULT_BASE_URLS = {
    "sandbox": "http://sandbox",
    "stripe": "https://api.stripe.com",
    "adyen": "https://checkout-test.adyen.com",
    "checkout": "https://api.sandbox.checkout.com",
}
STATUS_QUERIES = 3
CALL_TIMEOUT = 15.0
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_AMBIGUOUS = (httpx.TimeoutException, httpx.TransportError)


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
        )
    except (ValueError, KeyError, TypeError):
        raise VaultError("the vault entry is not a card") from None


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
        self._sandbox_app = sandbox_app
        self._clients: dict[str, httpx.AsyncClient] = {}
        self.breaker = domain.BreakerPolicy()
        # Told how long each PSP call took (the benchmark separates PSP time from ours).
        self.observe_call: Callable[[HttpCall, float], None] | None = None

    # --- plumbing ----------------------------------------------------------------------

    def _client(self, base_url: str) -> httpx.AsyncClient:
        client = self._clients.get(base_url)
        if client is None:
            if base_url == DEFAULT_BASE_URLS["sandbox"] and self._sandbox_app is not None:
                # The embedded default: the simulator answers in-process, no socket.
                transport: httpx.AsyncBaseTransport = httpx.ASGITransport(app=self._sandbox_app)
                client = httpx.AsyncClient(transport=transport, base_url=base_url)
            else:
                client = httpx.AsyncClient(
                    base_url=base_url, timeout=httpx.Timeout(10.0, connect=2.0)
                )
            self._clients[base_url] = client
        return client

    async def close(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    async def setup(self, tenant_id: str) -> Setup:
        async with self.kernel.db.transaction() as session:
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
        return failures is not None and int(failures) >= self.breaker.threshold

    async def _breaker_record(self, connector: str, healthy: bool) -> None:
        key = f"psp:breaker:{connector}"
        if healthy:
            await self.kernel.cache.delete(key)
        else:
            await self.kernel.cache.incr(key, ttl=self.breaker.open_seconds)

    async def _call(
        self, connector: Connector, call: HttpCall, parse: Any
    ) -> tuple[PspResult, int, Any]:
        """Send one call; transport failures become results that say whether we charged."""
        started = time.perf_counter()
        try:
            # ASGITransport (the in-process sandbox) has no timeouts of its own.
            async with asyncio.timeout(CALL_TIMEOUT):
                status, body = await send(self._client(connector.base_url), connector, call)
        except _NOT_SENT as exc:
            result = PspResult(
                Outcome.ERROR,
                decline_code=DeclineCode.UNAVAILABLE,
                message=type(exc).__name__,
                may_retry_elsewhere=True,
            )
            return result, domain.latency_ms(time.perf_counter() - started), None
        except (*_AMBIGUOUS, TimeoutError) as exc:
            result = PspResult(
                Outcome.ERROR,
                decline_code=DeclineCode.PROCESSING_ERROR,
                message=type(exc).__name__,
                may_retry_elsewhere=False,
            )
            return result, domain.latency_ms(time.perf_counter() - started), None
        if self.observe_call is not None:
            self.observe_call(call, time.perf_counter() - started)
        return parse(status, body), domain.latency_ms(time.perf_counter() - started), body

    # --- authorize ---------------------------------------------------------------------

    async def authorize(self, request: PaymentRequested) -> None:
        if not await self._claim(request):
            return
        try:
            card = card_from_vault(
                await self.kernel.vault.take(request.tenant_id, request.vault_ref)
            )
        except VaultError:
            await self._finish(
                request.payment_id,
                PspResult(
                    Outcome.ERROR,
                    decline_code=DeclineCode.PROCESSING_ERROR,
                    message="card details unavailable",
                ),
                connector=None,
            )
            return
        setup = await self.setup(request.tenant_id)
        facts = domain.PaymentFacts(
            request.amount, request.currency, request.brand, request.channel
        )
        routes = domain.candidates(setup.routes, facts, random.random())
        order = Order(
            reference=request.payment_id,
            amount=request.amount,
            currency=request.currency,
            idempotency_key=request.idempotency_key,
            capture=setup.capture,
            card=card,
            description=request.reference,
        )
        last = PspResult(
            Outcome.ERROR,
            decline_code=DeclineCode.PROCESSING_ERROR,
            message="no connector takes this payment",
        )
        last_connector: str | None = None
        for route in routes:
            if await self._breaker_open(route.connector):
                continue
            connector = self.connector(setup, route)
            result = await self._attempt(request.payment_id, connector, order)
            last, last_connector = result, connector.name
            next_step = domain.after_attempt(result)
            # A timeout or refusal counts against the PSP; our own invalid request does not.
            await self._breaker_record(
                connector.name,
                next_step is domain.Next.DONE or result.decline_code is DeclineCode.INVALID_REQUEST,
            )
            if next_step is domain.Next.DONE:
                break
            if next_step is domain.Next.ASK_STATUS:
                known = await self._ask_status(request.payment_id, connector)
                if known is None:
                    # Unknown whether it charged: never another PSP; reconciliation decides.
                    log.warning(
                        "psp.outcome_unknown",
                        payment_id=request.payment_id,
                        connector=connector.name,
                    )
                    return
                last = known
                if known.outcome is not Outcome.ERROR:
                    break
        await self._finish(
            request.payment_id, last, connector=last_connector, captured=setup.capture
        )

    async def _claim(self, request: PaymentRequested) -> bool:
        """Record the payment; False when it is already known (a redelivery)."""
        try:
            async with self.kernel.db.transaction() as session:
                await store.insert_payment(
                    session,
                    id=request.payment_id,
                    tenant_id=request.tenant_id,
                    capture_id=request.capture_id,
                    amount=request.amount,
                    currency=request.currency,
                    reference=request.reference,
                    channel=request.channel,
                    agent_id=request.agent_id,
                    brand=request.brand,
                    status=domain.PaymentStatus.SUBMITTED.value,
                )
        except IntegrityError:
            return False
        return True

    async def _attempt(self, payment_id: str, connector: Connector, order: Order) -> PspResult:
        key = f"{order.idempotency_key}:{connector.name}"
        async with self.kernel.db.transaction() as session:
            seq = await store.start_attempt(session, payment_id, "authorize", connector.name, key)
        call = connector.authorize_call(Order(**{**order.__dict__, "idempotency_key": key}))
        result, latency, body = await self._call(connector, call, connector.parse_authorize)
        async with self.kernel.db.transaction() as session:
            await store.finish_attempt(
                session,
                payment_id,
                seq,
                outcome=result.outcome.value,
                decline_code=result.decline_code.value if result.decline_code else None,
                http_status=result.http_status,
                psp_reference=result.psp_reference,
                latency_ms=latency,
                transcript=connector.scrub(
                    {
                        "request": {
                            "method": call.method,
                            "path": call.path,
                            "json": call.json,
                            "form": call.form,
                        },
                        "response": body,
                    }
                ),
            )
        return result

    async def _ask_status(self, payment_id: str, connector: Connector) -> PspResult | None:
        """What the PSP knows of our payment: a result, or None when it cannot tell us."""
        if not getattr(connector, "supports_status_query", True):
            return None
        for _ in range(STATUS_QUERIES):
            call = connector.status_call(payment_id, None)
            result, _, _ = await self._call(connector, call, connector.parse_status)
            if result.outcome is not Outcome.ERROR:
                return result
            if result.decline_code is DeclineCode.NOT_FOUND and result.may_retry_elsewhere:
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
        self, payment_id: str, result: PspResult, *, connector: str | None, captured: bool = True
    ) -> None:
        async with self.kernel.db.transaction() as session:
            payment = await store.payment(session, payment_id, lock=True)
            if payment is None or payment.status != domain.PaymentStatus.SUBMITTED:
                return
            attempts = len(await store.attempts_of(session, payment_id))
            code = result.decline_code.value if result.decline_code else None
            fields = {
                "payment_id": payment_id,
                "connector": connector,
                "psp_reference": result.psp_reference,
                "decline_code": code,
                "attempts": attempts,
                "tenant_id": payment.tenant_id,
                "correlation_id": payment_id,
            }
            event: Message
            if result.outcome is Outcome.APPROVED:
                status = domain.PaymentStatus.AUTHORIZED
                amount = result.amount or payment.amount
                event = PaymentAuthorized(**fields)
                await store.save_payment(
                    session,
                    payment_id,
                    authorized_amount=amount,
                    captured_amount=amount if captured else 0,
                )
            elif result.outcome is Outcome.DECLINED:
                status, event = domain.PaymentStatus.DECLINED, PaymentDeclined(**fields)
            elif result.outcome is Outcome.PENDING:
                status, event = (
                    domain.PaymentStatus.PENDING,
                    PaymentFailed(
                        **{**fields, "decline_code": DeclineCode.AUTHENTICATION_REQUIRED.value}
                    ),
                )
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
        self.kernel.relay.notify()

    # --- reconciliation ------------------------------------------------------------------

    async def reconcile(self, older_than_seconds: float = 30.0) -> int:
        """Resolve payments left `submitted` by asking the PSP last tried; never resend."""
        from datetime import timedelta

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
        if not await self.kernel.cache.set_if_absent(lock, b"1", ttl=CALL_TIMEOUT * 2):
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
