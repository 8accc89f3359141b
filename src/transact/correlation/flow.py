"""Correlation's use cases: record telephony's facts, find calls, and link them to agents.

Every link (automatic, claimed, searched, keyed code, assigned by a supervisor or a
CTI client) goes through `_link`: one transaction that locks the call's row, applies
the domain's verdict, and writes the new holder, the `call.assigned` event (outbox)
and the audit record together, so what is stored, published and audited never
disagree. The registry is only ever in the database, so every instance sees the same
calls and a restart loses nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from transact.contracts import utcnow
from transact.contracts.calls import CallAgentCode, CallAssigned, CallEnded, CallStarted
from transact.correlation import domain, store
from transact.correlation.codes import CODE_TTL, MAX_FAILURES, LinkCodes
from transact.correlation.domain import Call, Verdict
from transact.kernel import Kernel, audit
from transact.kernel.db import add_to_outbox, first_time
from transact.kernel.directory import DirectoryUser
from transact.kernel.errors import ApiError
from transact.kernel.security import Principal

log = structlog.get_logger("transact.correlation")

SERVICE_ACTOR = "service:correlation"
AGENT_CODE_CONSUMER = "correlation.agent_code"


class CallNotYetKnown(Exception):
    """A code was keyed on a call whose `call.started` has not arrived; the bus
    delivers the message again shortly."""


@dataclass(frozen=True)
class Criteria:
    """A search, numbers already in E.164."""

    to: str | None = None
    from_: str | None = None
    started_after: datetime | None = None
    started_before: datetime | None = None

    @property
    def empty(self) -> bool:
        return not (self.to or self.from_ or self.started_after or self.started_before)


@dataclass(frozen=True)
class Issued:
    code: str
    expires_in: int


def sees_all(principal: Principal) -> bool:
    """Supervisors, admins and API clients (scoped by the route) see the whole tenant."""
    return principal.kind == "client" or principal.supervises


def not_found() -> ApiError:
    return ApiError(404, "not_found", "no such call")


def call_ended() -> ApiError:
    return ApiError(409, "call_ended", "that call has ended")


class Correlation:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.codes = LinkCodes(kernel.cache, kernel.vault)

    # --- facts from telephony ---------------------------------------------------------

    async def call_started(self, message: CallStarted) -> None:
        if not domain.acceptable_ids(message.tenant_id, message.call_id):
            log.warning("correlation.call_dropped", reason="ids too long", topic=message.topic)
            return
        facts = domain.started_facts(
            reference=message.reference,
            from_masked=message.from_masked,
            to_masked=message.to_masked,
            from_digest=message.from_digest,
            to_digest=message.to_digest,
            sip_call_id=message.sip_call_id,
            external_id=message.external_id,
            started_at=message.occurred_at,
        )
        # The directory is a cache read: done before the transaction holds any lock.
        agent = await self._agent_for_hint(message.tenant_id, message.call_id, message.agent_hint)
        async with self.kernel.db.transaction() as session:
            new = domain.started(None, message.tenant_id, message.call_id, facts)
            if await store.insert_if_absent(session, new):
                call = new
            else:
                existing = await store.get(session, message.tenant_id, message.call_id, lock=True)
                assert existing is not None  # the insert just found it there
                call = domain.started(existing, message.tenant_id, message.call_id, facts)
                if call != existing:
                    await store.save(session, call)
            # A repeat of the start may still link the call if the first could not
            # (the directory had not heard of the agent yet); it never moves a held call.
            if agent is not None and call.live and call.agent_id is None:
                await self._link(session, call, agent.id, actor=SERVICE_ACTOR, via="agent_hint")
        self.kernel.relay.notify()

    async def _agent_for_hint(
        self, tenant_id: str, call_id: str, hint: str | None
    ) -> DirectoryUser | None:
        username = domain.usable_hint(hint)
        if username is None:
            if hint is not None:
                log.warning("correlation.agent_hint_ignored", call_id=call_id, reason="malformed")
            return None
        user = await self.kernel.directory.user(tenant_id, username)
        if user is None or user.disabled:
            # Not fatal: the agent can still claim the call by its reference.
            log.warning(
                "correlation.agent_hint_ignored",
                call_id=call_id,
                reason="unknown user" if user is None else "disabled user",
            )
            return None
        return user

    async def call_ended(self, message: CallEnded) -> None:
        if not domain.acceptable_ids(message.tenant_id, message.call_id):
            log.warning("correlation.call_dropped", reason="ids too long", topic=message.topic)
            return
        at, reason = domain.aware(message.occurred_at), message.reason
        async with self.kernel.db.transaction() as session:
            tombstone = domain.ended(None, message.tenant_id, message.call_id, at, reason)
            if await store.insert_if_absent(session, tombstone):
                return  # the end overtook the start; the start fills it in later
            existing = await store.get(session, message.tenant_id, message.call_id, lock=True)
            assert existing is not None
            call = domain.ended(existing, message.tenant_id, message.call_id, at, reason)
            if call != existing:
                await store.save(session, call)

    async def agent_code(self, message: CallAgentCode) -> None:
        """Digits the agent keyed on the call's agent leg: a pending code links the call to
        the agent who asked for it, even away from another agent, because keying it on
        that leg proves who is on the call."""
        tenant_id, call_id = message.tenant_id, message.call_id
        if not domain.acceptable_ids(tenant_id, call_id):
            return
        async with self.kernel.db.transaction() as session:
            # The inbox, not the code, makes this once-only: a redelivered message must
            # not find its code gone and count as a wrong guess.
            if not await first_time(session, AGENT_CODE_CONSUMER, message.id):
                return
            call = await store.get(session, tenant_id, call_id, lock=True)
            if call is None:
                raise CallNotYetKnown(call_id)
            if not call.live:
                return
            if await self.codes.failures(tenant_id, call_id) >= MAX_FAILURES:
                log.warning("correlation.link_code_ignored", call_id=call_id, reason="locked")
                return
            code = domain.keyed_code(message.code)
            agent_id = await self.codes.redeem(tenant_id, code) if code else None
            if agent_id is None:
                await self._wrong_code(session, call)
                return
            await self._link(
                session, call, agent_id, actor=f"user:{agent_id}", via="link_code", transfer=True
            )
        self.kernel.relay.notify()

    async def _wrong_code(self, session: AsyncSession, call: Call) -> None:
        attempts = await self.codes.count_failure(call.tenant_id, call.call_id)
        log.warning("correlation.link_code_rejected", call_id=call.call_id, attempts=attempts)
        await audit.append(
            session,
            action="correlation.link_code_rejected",
            actor=SERVICE_ACTOR,
            tenant_id=call.tenant_id,
            target=call.call_id,
            outcome="failure",
            details={"attempts": attempts, "locked": attempts >= MAX_FAILURES},
        )

    # --- reading ------------------------------------------------------------------------

    async def live(self, principal: Principal, limit: int) -> list[Call]:
        async with self.kernel.db.transaction() as session:
            return await store.live(
                session,
                principal.tenant_id,
                agent_id=None if sees_all(principal) else principal.id,
                limit=limit,
            )

    async def view(self, principal: Principal, call_id: str) -> Call:
        async with self.kernel.db.transaction() as session:
            call = await self._get(session, principal, call_id)
        everything = sees_all(principal)
        if not domain.may_see(call, principal.tenant_id, principal.id, sees_all=everything):
            raise not_found()
        return call

    async def lookup(
        self, principal: Principal, *, sip_call_id: str | None, external_id: str | None
    ) -> Call:
        if not all(
            domain.storable(v, domain.MAX_EXTERNAL) for v in (sip_call_id, external_id) if v
        ):
            raise not_found()
        async with self.kernel.db.transaction() as session:
            found = await store.by_external_ref(
                session, principal.tenant_id, sip_call_id=sip_call_id, external_id=external_id
            )
        if not found:
            raise not_found()
        if len(found) > 1 and found[1].live:
            raise ApiError(
                409, "ambiguous", "more than one live call carries that id", count=len(found)
            )
        return found[0]

    async def _get(
        self, session: AsyncSession, principal: Principal, call_id: str, *, lock: bool = False
    ) -> Call:
        if not domain.storable(call_id, domain.MAX_CALL_ID):
            raise not_found()
        call = await store.get(session, principal.tenant_id, call_id, lock=lock)
        if call is None:
            raise not_found()
        return call

    # --- linking ------------------------------------------------------------------------

    async def claim(self, principal: Principal, call_id: str) -> Call:
        async with self.kernel.db.transaction() as session:
            call = await self._get(session, principal, call_id, lock=True)
            linked = await self._claim(session, principal, call, via="claim")
        self.kernel.relay.notify()
        return linked

    async def claim_reference(self, principal: Principal, reference: str) -> Call:
        key = domain.reference_key(reference)
        if key is None:
            raise ApiError(
                422, "invalid_reference", "a call reference is letters and digits, e.g. K7-3Q9"
            )
        async with self.kernel.db.transaction() as session:
            count, found = await store.live_by_reference(session, principal.tenant_id, key)
            if count > 1:
                raise ApiError(
                    409, "ambiguous", "more than one live call has that reference", count=count
                )
            if found is None:
                if await store.any_with_reference(session, principal.tenant_id, key):
                    raise call_ended()
                raise not_found()
            call = await store.get(session, principal.tenant_id, found.call_id, lock=True)
            assert call is not None
            linked = await self._claim(session, principal, call, via="reference")
        self.kernel.relay.notify()
        return linked

    async def search(self, principal: Principal, criteria: Criteria, *, claim: bool) -> Call:
        """Exactly one live call matching every criterion, else not found or ambiguous."""
        if claim and principal.kind != "user":
            raise ApiError(403, "forbidden", "API clients cannot claim; assign the call instead")
        tenant_id = principal.tenant_id
        async with self.kernel.db.transaction() as session:
            count, found = await store.search(
                session,
                tenant_id,
                to_digest=self._phone_digest(tenant_id, criteria.to),
                from_digest=self._phone_digest(tenant_id, criteria.from_),
                started_after=criteria.started_after,
                started_before=criteria.started_before,
            )
            if found is None:
                raise ApiError(404, "not_found", "no live call matches")
            if count > 1:
                raise ApiError(
                    409,
                    "ambiguous",
                    f"{count} live calls match; narrow the search or use the call reference",
                    count=count,
                )
            call = await store.get(session, tenant_id, found.call_id, lock=claim)
            assert call is not None
            if claim:
                linked = await self._claim(session, principal, call, via="search")
            elif domain.may_find(call, tenant_id, principal.id, sees_all=sees_all(principal)):
                linked = call
            else:
                raise await self._taken(call)
        self.kernel.relay.notify()
        return linked

    def _phone_digest(self, tenant_id: str, number: str | None) -> str | None:
        """The keyed digest telephony put on the call for this number (same tenant key)."""
        return self.kernel.vault.digest(tenant_id, "phone", number) if number else None

    async def assign(
        self, principal: Principal, call_id: str, *, agent_id: str | None, username: str | None
    ) -> Call:
        """A supervisor or CTI client moving a call to an agent (a transfer when held)."""
        async with self.kernel.db.transaction() as session:
            call = await self._get(session, principal, call_id, lock=True)
            agent = await self._target_agent(principal.tenant_id, agent_id, username)
            linked = await self._link(
                session, call, agent.id, actor=principal.actor, via="assign", transfer=True
            )
        self.kernel.relay.notify()
        return linked

    async def _target_agent(
        self, tenant_id: str, agent_id: str | None, username: str | None
    ) -> DirectoryUser:
        directory = self.kernel.directory
        if agent_id is not None:
            user = await directory.user_by_id(tenant_id, agent_id)
        else:
            assert username is not None
            user = await directory.user(tenant_id, username)
        if user is None:
            raise ApiError(422, "unknown_agent", "no user of this tenant has that id or username")
        if user.disabled:
            raise ApiError(422, "agent_disabled", "that user is disabled")
        return user

    async def issue_code(self, principal: Principal) -> Issued:
        code = await self.codes.issue(principal.tenant_id, principal.id)
        return Issued(code, int(CODE_TTL))

    async def _claim(
        self, session: AsyncSession, principal: Principal, call: Call, *, via: str
    ) -> Call:
        return await self._link(session, call, principal.id, actor=principal.actor, via=via)

    async def _link(
        self,
        session: AsyncSession,
        call: Call,
        agent_id: str,
        *,
        actor: str,
        via: str,
        transfer: bool = False,
    ) -> Call:
        """Give `call` (locked by the caller) to `agent_id`, or raise why not."""
        verdict = (domain.transfer_verdict if transfer else domain.claim_verdict)(call, agent_id)
        if verdict is Verdict.ENDED:
            raise call_ended()
        if verdict is Verdict.TAKEN:
            raise await self._taken(call)
        if verdict is Verdict.ALREADY_YOURS:
            return call
        previous = call.agent_id
        linked = domain.assigned(call, agent_id, utcnow())
        await store.save(session, linked)
        await add_to_outbox(
            session,
            CallAssigned(
                tenant_id=call.tenant_id,
                correlation_id=call.call_id,
                call_id=call.call_id,
                agent_id=agent_id,
                previous_agent_id=previous,
            ),
        )
        await audit.append(
            session,
            action="correlation.call_transferred" if previous else "correlation.call_assigned",
            actor=actor,
            tenant_id=call.tenant_id,
            target=call.call_id,
            details={"agent_id": agent_id, "previous_agent_id": previous, "via": via},
        )
        return linked

    async def _taken(self, call: Call) -> ApiError:
        """409 naming the holder, so the agent knows whom to ask."""
        assert call.agent_id is not None
        holder = await self.kernel.directory.user_by_id(call.tenant_id, call.agent_id)
        name = holder.username if holder else None
        return ApiError(
            409,
            "call_taken",
            f"{name or 'another agent'} holds that call",
            agent={"id": call.agent_id, "username": name},
        )
