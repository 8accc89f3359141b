"""The ivr service's use cases: a call arrives, facts come in, the flow's state machine
decides, and its actions go out through the outbox (prompts, capture commands, the
hang-up) in the same transaction as the session's new state.

Each input is applied once (the inbox), in one transaction over the session's row.
An account lookup is the one slow action: it runs after that transaction commits,
and its answer is applied as an input of its own (a crash in between leaves the
session in `lookup`, which times out).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from transact.contracts import Message, utcnow
from transact.contracts.calls import CallHandover, CallHangup, CallPlay, ivr_key_context
from transact.contracts.capture import CaptureRequested, CaptureSubmitRequested
from transact.contracts.ivr import IvrStep
from transact.ivr import domain, prompts, store
from transact.ivr.domain import Flow, Input, Session, Stage, Step
from transact.ivr.lookup import AccountLookup, LookupResult
from transact.kernel import Kernel, audit
from transact.kernel.db import add_to_outbox, first_time
from transact.kernel.errors import ApiError, VaultError
from transact.kernel.security import Principal

log = structlog.get_logger("transact.ivr")

CONSUMER = "ivr"
# A stand-in for a call naming a flow the tenant does not have: it only says so.
UNAVAILABLE = Flow(name="unavailable", amount=1, reference="unavailable")


class NotYet(Exception):
    """A key came before its predecessor, or before its call's session: redelivered soon."""


def typed_context(session_id: str) -> bytes:
    return b"ivr-typed:" + session_id.encode()


def lookup_secret_context(flow_id: str) -> bytes:
    return b"ivr-lookup:" + flow_id.encode()


@dataclass(frozen=True)
class HandedAmount:
    """What the agent says the caller owes (None: the flow finds the amount itself)."""

    amount: int
    currency: str
    reference: str


def new_confirmation() -> str:
    return f"{secrets.randbelow(10**domain.CONFIRMATION_DIGITS):0{domain.CONFIRMATION_DIGITS}d}"


class Ivr:
    def __init__(self, kernel: Kernel, lookup: AccountLookup, shelf: prompts.ClipShelf) -> None:
        self.kernel = kernel
        self.lookup = lookup
        self.shelf = shelf

    # --- a call arrives ------------------------------------------------------------

    async def call_started(self, tenant_id: str, call_id: str, flow_ref: str) -> None:
        async with self.kernel.db.transaction() as session:
            if await store.session_for_call(session, tenant_id, call_id) is not None:
                return  # a redelivery
            found = await store.flow_named(session, tenant_id, flow_ref) or await store.flow(
                session, tenant_id, flow_ref
            )
            flow = _flow_of(found) if found else None
            if flow is None:
                log.warning("ivr.no_such_flow", call_id=call_id)
            began = domain.Began(unavailable=not flow)
            await self._begin(session, tenant_id, call_id, found, flow or UNAVAILABLE, began)
        self.kernel.relay.notify()

    async def hand_over(
        self, principal: Principal, call_id: str, flow_name: str, amount: HandedAmount | None
    ) -> store.SessionRow:
        """An agent sends the call they hold to a flow; it comes back to them at the end.

        Checked against the ivr service's view of calls (fed by call and capture facts):
        a call it has not heard of yet is not found, like an agent's payment on it.
        """
        async with self.kernel.db.transaction() as session:
            found = await store.flow_named(session, principal.tenant_id, flow_name)
            flow = _flow_of(found) if found else None
            if found is None or flow is None:
                raise ApiError(404, "flow_not_found", "no payment line (ivr flow) with that name")
            await self._check_call(session, principal, call_id)
            if amount is None and flow.amount_source == "agent":
                raise ApiError(
                    422, "amount_required", "this payment line needs the amount and reference"
                )
            began = domain.Began(
                agent_id=principal.id,
                amount=amount.amount if amount else None,
                currency=amount.currency if amount else None,
                reference=amount.reference if amount else None,
            )
            try:
                async with session.begin_nested():
                    row = await self._begin(
                        session, principal.tenant_id, call_id, found, flow, began
                    )
            except IntegrityError:
                raise in_ivr() from None
            await audit.append(
                session,
                action="ivr.handover",
                actor=principal.actor,
                tenant_id=principal.tenant_id,
                target=call_id,
                details={"flow": flow.name, "session_id": row.id, "amount": began.amount},
            )
            saved = await store.session_by_id(session, principal.tenant_id, row.id)
        self.kernel.relay.notify()
        return saved or row

    async def _check_call(self, session: AsyncSession, principal: Principal, call_id: str) -> None:
        call = await store.call(session, principal.tenant_id, call_id)
        if call is None:
            raise ApiError(404, "call_not_found", "no live call with that id")
        if call.ended:
            raise ApiError(409, "call_ended", "that call has ended")
        if call.agent_id != principal.id:
            raise ApiError(403, "not_your_call", "that call is not held by you; claim it first")
        if call.capture_id is not None:
            raise ApiError(
                409, "capture_in_progress", "this call has a payment being captured; end it first"
            )
        live = await store.session_for_call(session, principal.tenant_id, call_id)
        if live is not None and live.state.get("stage") != Stage.ENDED.value:
            raise in_ivr()

    async def _begin(
        self,
        session: AsyncSession,
        tenant_id: str,
        call_id: str,
        found: store.FlowRow | None,
        flow: Flow,
        began: domain.Began,
    ) -> store.SessionRow:
        now = utcnow()
        session_id = "ivs_" + secrets.token_hex(12)
        step = domain.begin(flow, session_id, began)
        row = store.SessionRow(
            id=session_id,
            tenant_id=tenant_id,
            call_id=call_id,
            flow_id=found.id if found else None,
            flow=flow.to_dict(),
            state={},
            key_seq=0,
            created_at=now,
            updated_at=now,
            agent_id=began.agent_id,
        )
        await store.insert_session(session, row, stage=step.session.stage.value)
        await self._apply(session, row, None, step, now)
        return row

    # --- what ivr knows of agents' calls ----------------------------------------------

    async def note_call(self, tenant_id: str, call_id: str, **values: object) -> None:
        async with self.kernel.db.transaction() as session:
            await store.note_call(session, tenant_id, call_id, **values)

    async def capture_opened(self, tenant_id: str, call_id: str, capture_id: str) -> None:
        async with self.kernel.db.transaction() as session:
            await store.capture_opened(session, tenant_id, call_id, capture_id)

    async def capture_closed(self, tenant_id: str, call_id: str, capture_id: str) -> None:
        async with self.kernel.db.transaction() as session:
            await store.capture_closed(session, tenant_id, call_id, capture_id)

    async def capture_over(self, tenant_id: str, capture_id: str) -> None:
        """A payment was decided: the capture it came from no longer holds its call."""
        async with self.kernel.db.transaction() as session:
            await store.capture_over(session, tenant_id, capture_id)

    # --- inputs --------------------------------------------------------------------

    async def key(
        self, tenant_id: str, call_id: str, seq: int, sealed: str, session_id: str | None = None
    ) -> None:
        key = self.kernel.vault.unseal(
            tenant_id, base64.b64decode(sealed), ivr_key_context(call_id)
        ).decode()
        await self.drive(
            tenant_id, call_id, lambda _: domain.Key(key), key_seq=seq, session_id=session_id
        )

    async def drive(
        self,
        tenant_id: str,
        call_id: str,
        input_for: Callable[[Session], Input | None],
        *,
        message_id: str | None = None,
        key_seq: int | None = None,
        session_id: str | None = None,
    ) -> None:
        """Apply one input to the call's session (if it has one; `session_id` names one,
        else the call's latest): `input_for` sees the current state and may decline (None)."""
        lookups: list[tuple[store.SessionRow, domain.LookUp]] = []
        async with self.kernel.db.transaction() as session:
            if session_id is not None:
                row = await store.session_locked(session, tenant_id, session_id)
            else:
                row = await store.session_for_call(session, tenant_id, call_id, lock=True)
            if row is None or row.call_id != call_id:
                if key_seq is not None:
                    raise NotYet("a key before its call's session")
                return  # not a self-service call
            if key_seq is not None and not await self._next_key(session, row, key_seq):
                return
            if message_id is not None and not await first_time(session, CONSUMER, message_id):
                return
            current = self._state_in(row)
            event = input_for(current)
            if event is None:
                return
            now = utcnow()
            step = domain.advance(Flow.from_dict(row.flow), current, event, now)
            lookups = [(row, a) for a in await self._apply(session, row, current, step, now)]
        self.kernel.relay.notify()
        for row, action in lookups:
            await self._look_up(row, action)

    async def _next_key(self, session: AsyncSession, row: store.SessionRow, seq: int) -> bool:
        """Menu keys in the order they were pressed, each once."""
        if seq <= row.key_seq:
            return False
        if seq > row.key_seq + 1:
            raise NotYet(f"key {seq} before {row.key_seq + 1}")
        await store.save_session(session, row.id, row.state, key_seq=seq)
        return True

    async def sweep(self, now: datetime | None = None) -> int:
        """Time out the sessions whose deadline has passed (no answer, no mark back)."""
        moment = now or utcnow()
        async with self.kernel.db.transaction() as session:
            due = await store.due(session, moment)
        for tenant_id, call_id, session_id in due:
            try:
                await self.drive(
                    tenant_id,
                    call_id,
                    lambda s: _timeout_if_due(s, moment),
                    session_id=session_id,
                )
            except Exception as exc:  # one broken session must not stop the others
                log.error("ivr.timeout_failed", call_id=call_id, error=type(exc).__name__)
        return len(due)

    async def payment_outcome(
        self, tenant_id: str, payment_id: str, status: domain.PaymentStatus, message_id: str
    ) -> None:
        async with self.kernel.db.transaction() as session:
            row = await store.session_for_capture(session, tenant_id, payment_id)
        if row is None:
            return  # not a self-service payment
        done = domain.PaymentDone(payment_id, status, new_confirmation())
        await self.drive(
            tenant_id, row.call_id, lambda _: done, message_id=message_id, session_id=row.id
        )

    # --- carrying out a step ---------------------------------------------------------

    async def _apply(
        self,
        session: AsyncSession,
        row: store.SessionRow,
        before: Session | None,
        step: Step,
        now: datetime,
    ) -> list[domain.LookUp]:
        """Save the step's session and put its actions in the outbox; the lookups to make
        once the transaction has committed are returned."""
        flow = Flow.from_dict(row.flow)
        messages: list[Message] = []
        lookups: list[domain.LookUp] = []
        seconds: float | None = None
        for action in step.actions:
            if isinstance(action, domain.Say):
                play, seconds = await self._play(session, row, flow, action)
                messages += play
            elif isinstance(action, domain.LookUp):
                lookups.append(action)
            else:
                messages.append(self._command(row, flow, step.session, action))
        after = domain.expect_by(flow, step.session, seconds, now)
        if before is None or before.stage is not after.stage:
            messages.append(self._step_event(row, flow, before, after))
        await store.save_session(
            session,
            row.id,
            self._state_out(row, after),
            stage=after.stage.value,
            capture_id=after.capture_id,
            outcome=after.outcome,
            deadline=after.deadline,
        )
        await add_to_outbox(session, *messages)
        return lookups

    async def _play(
        self, session: AsyncSession, row: store.SessionRow, flow: Flow, say: domain.Say
    ) -> tuple[list[Message], float]:
        wanted = prompts.recordings_wanted(flow, say.phrases)
        own = await store.recordings(session, row.tenant_id, flow.language, wanted)
        composed = prompts.compose(flow, say.phrases, own)
        if composed.missing:
            log.warning("ivr.phrases_missing", phrases=list(composed.missing)[:8])
        if not composed.clips:
            return [], 0.0
        clips = await self.shelf.names(composed.clips)
        play = CallPlay(
            tenant_id=row.tenant_id,
            correlation_id=row.id,
            call_id=row.call_id,
            clips=clips,
            mark=say.mark,
            barge_in=say.barge_in,
            handover=row.id if row.agent_id else None,
        )
        return [play], composed.seconds

    @staticmethod
    def _command(
        row: store.SessionRow,
        flow: Flow,
        state: Session,
        action: domain.OpenCapture | domain.Submit | domain.HangUp | domain.Handover,
    ) -> Message:
        common = {"tenant_id": row.tenant_id, "correlation_id": row.id, "call_id": row.call_id}
        if isinstance(action, domain.Handover):
            return CallHandover(**common, session_id=row.id, on=action.on)
        if isinstance(action, domain.OpenCapture):
            assert state.amount is not None
            assert state.currency is not None
            assert state.reference is not None
            return CaptureRequested(
                **common,
                capture_id=action.capture_id,
                amount=state.amount,
                currency=state.currency,
                reference=state.reference,
                fields=list(flow.fields),
                max_attempts=flow.max_attempts,
                replaces=action.replaces,
            )
        if isinstance(action, domain.Submit):
            return CaptureSubmitRequested(**common, capture_id=action.capture_id)
        return CallHangup(**common)

    @staticmethod
    def _step_event(
        row: store.SessionRow, flow: Flow, before: Session | None, after: Session
    ) -> IvrStep:
        return IvrStep(
            tenant_id=row.tenant_id,
            correlation_id=row.id,
            session_id=row.id,
            call_id=row.call_id,
            flow=flow.name,
            stage=after.stage.value,
            previous=before.stage.value if before else None,
            attempts=after.attempts,
            cards=after.cards,
            payments=after.payments,
            capture_id=after.capture_id,
            amount=after.amount,
            currency=after.currency,
            reference=after.reference,
            outcome=after.outcome,
            confirmation=after.confirmation,
            agent_id=after.agent_id,
            brand=after.brand,
            last4=after.last4,
        )

    # --- the account lookup ------------------------------------------------------------

    async def _look_up(self, row: store.SessionRow, action: domain.LookUp) -> None:
        flow = Flow.from_dict(row.flow)
        result: LookupResult = domain.LookupFailed()
        secret = await self._lookup_secret(row)
        if flow.lookup_url and secret is not None:
            result = await self.lookup(
                flow.lookup_url, secret, action.account, row.call_id, flow.name
            )

        def answer(state: Session) -> Input | None:
            return result if state.stage is Stage.LOOKUP else None

        await self.drive(row.tenant_id, row.call_id, answer, session_id=row.id)

    async def _lookup_secret(self, row: store.SessionRow) -> str | None:
        if row.flow_id is None:
            return None
        async with self.kernel.db.transaction() as session:
            found = await store.flow(session, row.tenant_id, row.flow_id)
        if found is None or found.lookup_secret is None:
            return None  # the flow was deleted mid-call
        try:
            return self.kernel.vault.unseal(
                row.tenant_id,
                base64.b64decode(found.lookup_secret),
                lookup_secret_context(found.id),
            ).decode()
        except VaultError:
            return None

    # --- the session's state in the database ---------------------------------------------

    def _state_out(self, row: store.SessionRow, state: Session) -> dict[str, object]:
        data = state.to_dict()
        if state.typed:  # account digits: never in clear at rest
            blob = self.kernel.vault.seal(
                row.tenant_id, state.typed.encode(), typed_context(row.id)
            )
            data["typed"] = base64.b64encode(blob).decode()
        return data

    def _state_in(self, row: store.SessionRow) -> Session:
        data = dict(row.state)
        if data.get("typed"):
            data["typed"] = self.kernel.vault.unseal(
                row.tenant_id, base64.b64decode(data["typed"]), typed_context(row.id)
            ).decode()
        return Session.from_dict(data)


def _flow_of(row: store.FlowRow) -> Flow | None:
    try:
        return Flow.from_dict(row.settings)
    except ValueError:
        return None  # saved by an older version with other rules: treat as missing


def _timeout_if_due(state: Session, now: datetime) -> Input | None:
    return domain.Timeout() if state.deadline is not None and state.deadline <= now else None


def in_ivr() -> ApiError:
    return ApiError(409, "call_in_ivr", "this call is with a payment line already")
