"""Capture's use cases: open, key, recapture, submit, cancel, expire, record the outcome.

Each is one database transaction over the session row (locked), with the card
draft in the vault and the resulting events in the outbox, so what the agent
sees, what is stored and what is published never disagree.

The vault entry of a session holds the card draft and the keypad sequence
number that produced it, plus the draft before that message: a keypad message
redelivered after a crash between the vault write and the commit is applied to
the draft it was first applied to, never twice.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import json
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from transact.capture import domain, store
from transact.contracts import Message, utcnow
from transact.contracts.calls import InputMode, keypad_context
from transact.contracts.capture import (
    CancelReason,
    CaptureCancelled,
    CaptureCancelRequested,
    CaptureCardPosted,
    CaptureChannel,
    CaptureCompleted,
    CaptureInputChanged,
    CaptureProgress,
    CaptureRecaptureRequested,
    CaptureRequested,
    CaptureStarted,
    CaptureSubmitRequested,
    link_card_context,
)
from transact.contracts.payments import PaymentRequested
from transact.kernel import Kernel, audit
from transact.kernel.db import add_to_outbox
from transact.kernel.errors import ApiError, VaultError
from transact.kernel.security import Principal

# Options chosen when the capture opened, kept in the session's state beside the
# domain's counts and verdicts (every step rewrites the state; these survive it).
STATE_OPTIONS = ("save_card", "input")

# The vault entry outlives the session a little, so expiry (not TTL) decides its end.
VAULT_MARGIN = timedelta(minutes=2)
TERMINAL_FOR_CANCEL = ("submitted", "authorized", "declined", "failed")


class OutOfOrder(Exception):
    """A keypad message arrived before its predecessor; the bus redelivers it shortly."""


@dataclass(frozen=True)
class Draft:
    seq: int
    card: domain.Card
    previous: domain.Card | None

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "seq": self.seq,
                "card": self.card.to_bytes().decode(),
                "previous": self.previous.to_bytes().decode() if self.previous else None,
            }
        ).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Draft:
        data = json.loads(raw)
        previous = data["previous"]
        return cls(
            data["seq"],
            domain.Card.from_bytes(data["card"].encode()),
            domain.Card.from_bytes(previous.encode()) if previous else None,
        )


def policy_from_dict(data: dict[str, Any]) -> domain.Policy:
    """A tenant's policy from stored or submitted settings; bad ones are a clear 422."""
    try:
        return domain.Policy.from_dict(data)
    except (ValueError, TypeError) as exc:
        raise ApiError(422, "invalid_policy", str(exc)) from None


def _opened_row(
    step: domain.Step,
    now: datetime,
    *,
    id: str,
    tenant_id: str,
    call_id: str | None,
    agent_id: str | None,
    channel: CaptureChannel,
    amount: int,
    currency: str,
    reference: str,
    vault_ref: str,
    state: dict[str, Any] | None = None,
) -> store.Row:
    """A capture just opened on `step`, capturing its first field."""
    return store.Row(
        id=id,
        tenant_id=tenant_id,
        call_id=call_id,
        agent_id=agent_id,
        channel=channel,
        amount=amount,
        currency=currency,
        reference=reference,
        status="capturing",
        cancel_reason=None,
        state=state if state is not None else step.session.to_dict(),
        vault_ref=vault_ref,
        expires_at=step.session.expires_at(),
        created_at=now,
        outcome=None,
    )


def _started(row: store.Row, policy: domain.Policy, input: InputMode = "keypad") -> Message:
    return CaptureStarted(
        tenant_id=row.tenant_id,
        correlation_id=row.id,
        capture_id=row.id,
        call_id=row.call_id,
        # A row's channel was one of these when it was opened (`_opened_row`).
        channel=cast(CaptureChannel, row.channel),
        agent_id=row.agent_id,
        fields=list(policy.fields),
        amount=row.amount,
        currency=row.currency,
        reference=row.reference,
        input=input,
    )


def _progress_events(row: store.Row, step: domain.Step) -> list[Message]:
    events: list[Message] = [
        CaptureProgress(
            tenant_id=row.tenant_id,
            correlation_id=row.id,
            capture_id=row.id,
            call_id=row.call_id,
            agent_id=row.agent_id,
            field=p.field,
            event=p.event,
            digits=p.digits,
            complete=p.complete,
            valid=p.valid,
            reason=p.reason,
            brand=p.brand.value if p.brand else None,
            last4=p.last4,
        )
        for p in step.progress
    ]
    session = step.session
    # Only the step that completed the last field announces it; keys after that are ignored.
    just_completed = any(p.event == "completed" for p in step.progress)
    if (
        just_completed
        and session.status is domain.SessionStatus.READY
        and session.brand
        and session.bin
        and session.last4
    ):
        events.append(
            CaptureCompleted(
                tenant_id=row.tenant_id,
                correlation_id=row.id,
                capture_id=row.id,
                call_id=row.call_id,
                agent_id=row.agent_id,
                brand=session.brand.value,
                bin=session.bin,
                last4=session.last4,
            )
        )
    return events


class Capture:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    async def policy(self, session: AsyncSession, tenant_id: str) -> domain.Policy:
        stored = await store.policy_of(session, tenant_id)
        return policy_from_dict(stored) if stored else domain.Policy()

    # --- opening -------------------------------------------------------------------

    async def open_phone(
        self,
        principal: Principal,
        call_id: str,
        amount: int,
        currency: str,
        reference: str,
        fields: list[str] | None,
        *,
        save_card: bool = False,
        input: InputMode = "keypad",
    ) -> store.Row:
        now = utcnow()
        capture_id = "pay_" + secrets.token_hex(12)
        vault_ref = "cap_" + secrets.token_urlsafe(18)
        async with self.kernel.db.transaction() as session:
            call = await store.call(session, call_id)
            if call is None or call.tenant_id != principal.tenant_id:
                raise ApiError(404, "call_not_found", "no live call with that id")
            if call.ended:
                raise ApiError(409, "call_ended", "that call has ended")
            if call.agent_id != principal.id:
                raise ApiError(403, "not_your_call", "that call is not held by you; claim it first")
            policy = await self.policy(session, principal.tenant_id)
            if fields is not None:
                policy = policy_from_dict({**policy.to_dict(), "fields": fields})
            step = domain.start(policy, now)
            row = _opened_row(
                step,
                now,
                id=capture_id,
                tenant_id=principal.tenant_id,
                call_id=call_id,
                agent_id=principal.id,
                channel="phone",
                amount=amount,
                currency=currency,
                reference=reference,
                vault_ref=vault_ref,
                state={
                    **step.session.to_dict(),
                    **({"save_card": True} if save_card else {}),
                    **({"input": input} if input != "keypad" else {}),
                },
            )
            try:
                async with session.begin_nested():
                    await store.insert(session, row)
            except IntegrityError:
                raise ApiError(
                    409, "capture_in_progress", "this call already has a payment being captured"
                ) from None
            await self.kernel.vault.put(
                principal.tenant_id,
                Draft(0, step.card, None).to_bytes(),
                ref=vault_ref,
                ttl=policy.ttl.total_seconds() + VAULT_MARGIN.total_seconds(),
            )
            await add_to_outbox(
                session,
                _started(row, policy, input),
                *_progress_events(row, step),
            )
            await audit.append(
                session,
                action="capture.opened",
                actor=principal.actor,
                tenant_id=row.tenant_id,
                target=row.id,
                details={
                    "call_id": call_id,
                    "amount": amount,
                    "currency": currency,
                    **({"save_card": True} if save_card else {}),
                    **({"input": input} if input != "keypad" else {}),
                },
            )
        self.kernel.relay.notify()
        return row

    # --- keypad or speech ----------------------------------------------------------------

    async def switch_input(
        self, principal: Principal, capture_id: str, mode: InputMode
    ) -> store.Row:
        """The customer keys or speaks the rest of the card: fields already complete stay
        complete, the field being given goes on from where it is. Telephony hears of it
        and routes the customer's keys (or audio) accordingly."""
        async with self.kernel.db.transaction() as session:
            row = await self._mine(session, principal, capture_id)
            if row.channel != "phone":
                raise ApiError(
                    409, "not_a_phone_payment", "only a payment taken on a call can be spoken"
                )
            if row.status not in store.OPEN:
                raise ApiError(409, "not_capturing", f"the payment is {row.status}")
            if row.state.get("input", "keypad") == mode:
                return row  # already so: nothing to tell anyone
            await store.save(session, row.id, state={**row.state, "input": mode})
            await add_to_outbox(
                session,
                CaptureInputChanged(
                    tenant_id=row.tenant_id,
                    correlation_id=row.id,
                    capture_id=row.id,
                    call_id=row.call_id,
                    agent_id=row.agent_id,
                    input=mode,
                ),
            )
            await audit.append(
                session,
                action="capture.input_changed",
                actor=principal.actor,
                tenant_id=row.tenant_id,
                target=row.id,
                details={"input": mode},
            )
        self.kernel.relay.notify()
        return await self.view(principal, capture_id)

    async def recapture_requested(self, message: CaptureRecaptureRequested) -> None:
        """Voice asks for a field again (the customer said the read-back was wrong). Like
        the agent's re-ask; a capture no longer open is left alone. A redelivery asks
        again, which clears what was said since: the customer is asked again anyway."""
        async with self.kernel.db.transaction() as session:
            row = await store.get(session, message.capture_id, lock=True)
            if (
                row is None
                or row.tenant_id != message.tenant_id
                or row.channel != "phone"
                or row.status not in store.OPEN
            ):
                return
            current = domain.Session.from_dict(row.state)
            if message.field not in current.policy.fields:
                return
            try:
                draft = Draft.from_bytes(await self.kernel.vault.get(row.tenant_id, row.vault_ref))
                step = domain.recapture(current, draft.card, message.field)
            except (VaultError, ValueError):
                return  # the card is gone or the capture failed: nothing to ask again
            await self._store_draft(row, Draft(draft.seq, step.card, draft.previous))
            await self._save_step(session, row, step.session, [step])
            await audit.append(
                session,
                action="capture.recapture",
                actor="voice",
                tenant_id=row.tenant_id,
                target=row.id,
                details={"field": message.field, "reason": message.reason},
            )
        self.kernel.relay.notify()

    # --- self-service calls (a flow asks, no agent) ----------------------------------------

    async def open_ivr(self, message: CaptureRequested) -> None:
        """A keypad capture for a self-service call: like an agent's, with no agent.

        The capture id is the asker's idempotency key. The capture it `replaces` is
        cancelled first, in the same transaction, so the call never has two open.
        """
        tenant_id, call_id, now = message.tenant_id, message.call_id, utcnow()
        async with self.kernel.db.transaction() as session:
            if await store.get(session, message.capture_id) is not None:
                return  # a redelivery
            if message.replaces:
                replaced = await store.get(session, message.replaces, lock=True)
                if replaced and replaced.call_id == call_id and replaced.status in store.OPEN:
                    await self._end(session, replaced, "cancelled", "ivr")
            policy = await self._ivr_policy(session, message)
            step = domain.start(policy, now)
            row = _opened_row(
                step,
                now,
                id=message.capture_id,
                tenant_id=tenant_id,
                call_id=call_id,
                agent_id=None,
                channel="ivr",
                amount=message.amount,
                currency=message.currency,
                reference=message.reference,
                vault_ref="cap_" + secrets.token_urlsafe(18),
            )
            call = await store.call(session, call_id)
            refused = await self._refusal(session, row, ended=bool(call and call.ended))
            if refused is not None:
                await add_to_outbox(session, refused)
            else:
                await self.kernel.vault.put(
                    tenant_id,
                    Draft(0, step.card, None).to_bytes(),
                    ref=row.vault_ref,
                    ttl=policy.ttl.total_seconds() + VAULT_MARGIN.total_seconds(),
                )
                await add_to_outbox(
                    session,
                    _started(row, policy),
                )
            await audit.append(
                session,
                action="capture.opened",
                actor="ivr",
                tenant_id=tenant_id,
                target=row.id,
                details={"call_id": call_id, "amount": row.amount, "currency": row.currency},
            )
        self.kernel.relay.notify()

    async def _ivr_policy(self, session: AsyncSession, message: CaptureRequested) -> domain.Policy:
        policy = await self.policy(session, message.tenant_id)
        overrides: dict[str, Any] = {}
        if message.fields is not None:
            overrides["fields"] = message.fields
        if message.max_attempts is not None:
            overrides["max_attempts"] = message.max_attempts
        try:
            return domain.Policy.from_dict({**policy.to_dict(), **overrides})
        except ValueError:
            return policy  # the flow was checked when saved; the tenant's rules still hold

    async def _refusal(
        self, session: AsyncSession, row: store.Row, *, ended: bool
    ) -> CaptureCancelled | None:
        """Insert the capture, cancelled at once when the call ended or holds another one."""
        reason: CancelReason | None = "call_ended" if ended else None
        if reason is None:
            try:
                async with session.begin_nested():
                    await store.insert(session, row)
                return None
            except IntegrityError:
                reason = "call_busy"  # one open capture per call (an agent's, perhaps)
        # Inserted cancelled: the index allows one open capture per call, not two.
        await store.insert(session, replace(row, status="cancelled"))
        await store.save(session, row.id, cancel_reason=reason)
        return CaptureCancelled(
            tenant_id=row.tenant_id,
            correlation_id=row.id,
            capture_id=row.id,
            call_id=row.call_id,
            agent_id=None,
            reason=reason,
        )

    async def submit_ivr(self, message: CaptureSubmitRequested) -> None:
        """The caller confirmed: request the payment, as an agent's submit does."""
        async with self.kernel.db.transaction() as session:
            row = await store.get(session, message.capture_id, lock=True)
            if (
                row is None
                or row.tenant_id != message.tenant_id
                or row.channel != "ivr"
                or row.call_id != message.call_id
                or row.status != "ready"
            ):
                return  # not a self-service capture, or submitted already (a redelivery)
            try:
                await self._request_payment(session, row, actor="ivr")
            except ApiError:
                # The card is gone (the capture outlived its vault entry): nothing to pay with.
                await self._end(session, row, "expired", "expired")
        self.kernel.relay.notify()

    # --- cards typed on the hosted payment page ------------------------------------------

    async def link_card(self, message: CaptureCardPosted) -> None:
        """Validate a card posted on the payment page, by the keypad's rules; keep it in
        the vault (`ready`, for the agent to submit) or request the payment at once.

        One capture per card posted: a card the rules refuse ends its capture
        (`cancelled`, reason `invalid`) and the page asks again with a new one.
        """
        tenant_id, now = message.tenant_id, utcnow()
        values = self._posted_values(tenant_id, message)
        async with self.kernel.db.transaction() as session:
            if await store.get(session, message.capture_id) is not None:
                return  # a redelivery: the first delivery did it all
            policy = await self.policy(session, tenant_id)
            # Fields capture does not know fall back to the tenant's own.
            with contextlib.suppress(ValueError):
                policy = domain.Policy.from_dict({**policy.to_dict(), "fields": message.fields})
            step = domain.fill(policy, values, now, now.date())
            # The name on the card (the page asks for it when the tenant wants it) goes
            # with the card; the page checked it, and an unusable one is left out.
            step = dataclasses.replace(
                step, card=dataclasses.replace(step.card, holder=values.get("holder"))
            )
            ready = step.session.status is domain.SessionStatus.READY
            row = _opened_row(
                step,
                now,
                id=message.capture_id,
                tenant_id=tenant_id,
                call_id=None,
                agent_id=message.agent_id,
                channel="link",
                amount=message.amount,
                currency=message.currency,
                reference=message.reference,
                vault_ref="cap_" + secrets.token_urlsafe(18),
            )
            await store.insert(session, row)
            events: list[Message] = [
                _started(row, policy),
                *_progress_events(row, step),
            ]
            if not ready:
                await store.save(session, row.id, status="cancelled", cancel_reason="invalid")
                events.append(
                    CaptureCancelled(
                        tenant_id=tenant_id,
                        correlation_id=row.id,
                        capture_id=row.id,
                        call_id=None,
                        agent_id=row.agent_id,
                        reason="invalid",
                    )
                )
            elif message.submit:
                events.append(await self._request_link_payment(session, row, step))
            else:
                await self.kernel.vault.put(
                    tenant_id,
                    Draft(0, step.card, None).to_bytes(),
                    ref=row.vault_ref,
                    ttl=policy.ttl.total_seconds() + VAULT_MARGIN.total_seconds(),
                )
                await store.save(session, row.id, status="ready")
            await add_to_outbox(session, *events)
            await audit.append(
                session,
                action="capture.link_card",
                actor=f"link:{message.link_id}",
                tenant_id=tenant_id,
                target=row.id,
                details={"valid": ready, "submit": message.submit, "amount": row.amount},
            )
        self.kernel.relay.notify()

    def _posted_values(self, tenant_id: str, message: CaptureCardPosted) -> dict[str, str]:
        """The posted fields as strings; none (every field refused) when they do not open."""
        try:
            raw = self.kernel.vault.unseal(
                tenant_id, base64.b64decode(message.sealed), link_card_context(message.capture_id)
            )
            data = json.loads(raw)
        except (VaultError, ValueError, binascii.Error):
            return {}
        if not isinstance(data, dict):
            return {}
        return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}

    async def _request_link_payment(
        self, session: AsyncSession, row: store.Row, step: domain.Step
    ) -> PaymentRequested:
        """The customer pressed Pay: the card goes to its single-use entry for the PSP."""
        payment_ref = await self.kernel.vault.put(
            row.tenant_id, step.card.to_bytes(), ttl=VAULT_MARGIN.total_seconds() * 5
        )
        await store.save(session, row.id, status="submitted")
        brand = step.session.brand
        return PaymentRequested(
            tenant_id=row.tenant_id,
            correlation_id=row.id,
            payment_id=row.id,
            capture_id=row.id,
            amount=row.amount,
            currency=row.currency,
            reference=row.reference,
            channel=row.channel,
            agent_id=row.agent_id,
            vault_ref=payment_ref,
            brand=brand.value if brand else None,
            idempotency_key=f"{row.id}:authorize",
        )

    # --- keys ----------------------------------------------------------------------

    async def keys(self, tenant_id: str, call_id: str, seq: int, sealed: str) -> None:
        async with self.kernel.db.transaction() as session:
            call = await store.call(session, call_id, lock=True)
            last = call.keypad_seq if call else 0
            if seq <= last:
                return  # a redelivery of a message already applied
            if seq > last + 1:
                raise OutOfOrder(f"keypad {seq} before {last + 1}")
            await store.upsert_call(session, call_id, tenant_id, keypad_seq=seq)
            row = await store.open_for_call(session, tenant_id, call_id)
            if row is None or row.status != "capturing" or row.expires_at <= utcnow():
                return  # keys outside a live capture are nobody's card data: drop them
            keys = self.kernel.vault.unseal(
                tenant_id, base64.b64decode(sealed), keypad_context(call_id)
            ).decode()
            try:
                stored = await self.kernel.vault.get(tenant_id, row.vault_ref)
            except VaultError:
                # The draft went with its vault entry (a cache restarted empty, an
                # eviction): the keys so far are lost, so the capture ends now, clearly,
                # rather than failing every key until it expires.
                await self._end(session, row, "expired", "expired")
                return
            draft = Draft.from_bytes(stored)
            card = draft.previous if draft.seq == seq and draft.previous else draft.card
            current = domain.Session.from_dict(row.state)
            steps: list[domain.Step] = []
            for key in keys:
                step = domain.press(current, card, key, utcnow().date())
                steps.append(step)
                current, card = step.session, step.card
            await self._store_draft(
                row, Draft(seq, card, draft.card if draft.seq != seq else draft.previous)
            )
            await self._save_step(session, row, current, steps)
        self.kernel.relay.notify()

    async def _store_draft(self, row: store.Row, draft: Draft) -> None:
        ttl = max(1.0, (row.expires_at - utcnow()).total_seconds()) + VAULT_MARGIN.total_seconds()
        await self.kernel.vault.put(row.tenant_id, draft.to_bytes(), ref=row.vault_ref, ttl=ttl)

    async def _save_step(
        self,
        session: AsyncSession,
        row: store.Row,
        current: domain.Session,
        steps: list[domain.Step],
    ) -> None:
        status = {
            domain.SessionStatus.CAPTURING: "capturing",
            domain.SessionStatus.READY: "ready",
            domain.SessionStatus.FAILED: "cancelled",
        }[current.status]
        options = {k: row.state[k] for k in STATE_OPTIONS if k in row.state}
        await store.save(
            session,
            row.id,
            state={**current.to_dict(), **options},
            status=status,
            cancel_reason="failed" if status == "cancelled" else None,
        )
        events: list[Message] = []
        for step in steps:
            events += _progress_events(row, step)
        if status == "cancelled":
            await self.kernel.vault.delete(row.tenant_id, row.vault_ref)
            events.append(
                CaptureCancelled(
                    tenant_id=row.tenant_id,
                    correlation_id=row.id,
                    capture_id=row.id,
                    call_id=row.call_id,
                    agent_id=row.agent_id,
                    reason="failed",
                )
            )
        await add_to_outbox(session, *events)

    # --- agent actions ---------------------------------------------------------------

    async def _mine(
        self, session: AsyncSession, principal: Principal, capture_id: str
    ) -> store.Row:
        row = await store.get(session, capture_id, lock=True)
        if row is None or not principal.may_read(row.tenant_id, row.agent_id):
            raise ApiError(404, "not_found", "no such payment")
        return row

    async def view(self, principal: Principal, capture_id: str) -> store.Row:
        async with self.kernel.db.transaction() as session:
            row = await store.get(session, capture_id)
        if row is None or not principal.may_read(row.tenant_id, row.agent_id):
            raise ApiError(404, "not_found", "no such payment")
        return row

    async def payments(
        self,
        principal: Principal,
        *,
        call_id: str | None = None,
        statuses: tuple[str, ...] = (),
        limit: int = 100,
    ) -> list[store.Row]:
        """What the caller may see, newest first: an agent their own payments, everyone
        else (supervisors, admins, API clients) the whole tenant's."""
        own = principal.kind == "user" and not principal.supervises
        async with self.kernel.db.transaction() as session:
            return await store.listed(
                session,
                principal.tenant_id,
                agent_id=principal.id if own else None,
                call_id=call_id,
                statuses=statuses,
                limit=limit,
            )

    async def recapture(self, principal: Principal, capture_id: str, field: str) -> store.Row:
        async with self.kernel.db.transaction() as session:
            row = await self._mine(session, principal, capture_id)
            if row.status not in store.OPEN:
                raise ApiError(409, "not_capturing", f"the payment is {row.status}")
            current = domain.Session.from_dict(row.state)
            if field not in current.policy.fields:
                raise ApiError(
                    422, "unknown_field", f"field must be one of {', '.join(current.policy.fields)}"
                )
            draft = Draft.from_bytes(await self._draft(row))
            try:
                step = domain.recapture(current, draft.card, field)
            except ValueError as exc:
                raise ApiError(409, "cannot_recapture", str(exc)) from None
            await self._store_draft(row, Draft(draft.seq, step.card, draft.previous))
            await self._save_step(session, row, step.session, [step])
            await audit.append(
                session,
                action="capture.recapture",
                actor=principal.actor,
                tenant_id=row.tenant_id,
                target=row.id,
                details={"field": field},
            )
        self.kernel.relay.notify()
        return await self.view(principal, capture_id)

    async def _draft(self, row: store.Row) -> bytes:
        try:
            return await self.kernel.vault.get(row.tenant_id, row.vault_ref)
        except VaultError:
            raise ApiError(
                410, "capture_expired", "the card details are gone; start again"
            ) from None

    async def submit(self, principal: Principal, capture_id: str) -> store.Row:
        async with self.kernel.db.transaction() as session:
            row = await self._mine(session, principal, capture_id)
            if row.status == "submitted" or row.status in TERMINAL_FOR_CANCEL:
                return row  # submitting twice asks for one payment
            if row.status != "ready":
                raise ApiError(
                    409,
                    "not_ready",
                    "every field must be complete and valid first"
                    if row.status == "capturing"
                    else f"the payment is {row.status}",
                )
            await self._request_payment(session, row, actor=principal.actor)
        self.kernel.relay.notify()
        return await self.view(principal, capture_id)

    async def _request_payment(self, session: AsyncSession, row: store.Row, actor: str) -> None:
        """A ready capture's card to its single-use entry for the PSP adapter, asked to pay."""
        draft = Draft.from_bytes(await self._draft(row))
        state = domain.Session.from_dict(row.state)
        # The PSP adapter gets its own single-use entry; the session's draft is gone.
        payment_ref = await self.kernel.vault.put(
            row.tenant_id, draft.card.to_bytes(), ttl=VAULT_MARGIN.total_seconds() * 5
        )
        await self.kernel.vault.delete(row.tenant_id, row.vault_ref)
        await store.save(session, row.id, status="submitted")
        await add_to_outbox(
            session,
            PaymentRequested(
                tenant_id=row.tenant_id,
                correlation_id=row.id,
                payment_id=row.id,
                capture_id=row.id,
                amount=row.amount,
                currency=row.currency,
                reference=row.reference,
                channel=row.channel,
                agent_id=row.agent_id,
                vault_ref=payment_ref,
                brand=state.brand.value if state.brand else None,
                idempotency_key=f"{row.id}:authorize",
                save_card=bool(row.state.get("save_card", False)),
            ),
        )
        await audit.append(
            session,
            action="payment.submitted",
            actor=actor,
            tenant_id=row.tenant_id,
            target=row.id,
            details={"amount": row.amount, "currency": row.currency},
        )

    async def cancel(self, principal: Principal, capture_id: str) -> store.Row:
        async with self.kernel.db.transaction() as session:
            row = await self._mine(session, principal, capture_id)
            if row.status in TERMINAL_FOR_CANCEL:
                raise ApiError(
                    409,
                    "already_submitted",
                    f"the payment is {row.status}; refund or void it instead",
                )
            if row.status in store.OPEN:
                await self._end(session, row, "cancelled", "agent")
                await audit.append(
                    session,
                    action="capture.cancelled",
                    actor=principal.actor,
                    tenant_id=row.tenant_id,
                    target=row.id,
                )
        self.kernel.relay.notify()
        return await self.view(principal, capture_id)

    async def cancel_requested(self, message: CaptureCancelRequested) -> None:
        """Remote turned an open phone capture into a payment link: close the capture and
        wipe its card draft, so the customer pays on the page instead. A capture no longer
        open (submitted meanwhile, ended) stays as it is; a redelivery finds it closed."""
        async with self.kernel.db.transaction() as session:
            row = await store.get(session, message.capture_id, lock=True)
            if (
                row is None
                or row.tenant_id != message.tenant_id
                or row.channel != "phone"
                or row.status not in store.OPEN
            ):
                return
            await self._end(session, row, "cancelled", message.reason, link_id=message.link_id)
            await audit.append(
                session,
                action="capture.cancelled",
                actor=f"link:{message.link_id}" if message.link_id else "remote",
                tenant_id=row.tenant_id,
                target=row.id,
                details={"reason": message.reason, "link_id": message.link_id},
            )
        self.kernel.relay.notify()

    async def _end(
        self,
        session: AsyncSession,
        row: store.Row,
        status: str,
        reason: CancelReason,
        *,
        link_id: str | None = None,
    ) -> None:
        await self.kernel.vault.delete(row.tenant_id, row.vault_ref)
        await store.save(session, row.id, status=status, cancel_reason=reason)
        await add_to_outbox(
            session,
            CaptureCancelled(
                tenant_id=row.tenant_id,
                correlation_id=row.id,
                capture_id=row.id,
                call_id=row.call_id,
                agent_id=row.agent_id,
                reason=reason,
                link_id=link_id,
            ),
        )

    # --- facts from other services ---------------------------------------------------

    async def call_assigned(self, tenant_id: str, call_id: str, agent_id: str) -> None:
        async with self.kernel.db.transaction() as session:
            await store.upsert_call(session, call_id, tenant_id, agent_id=agent_id)
            row = await store.open_for_call(session, tenant_id, call_id)
            if row is not None and row.agent_id != agent_id:
                # A transfer: the capture goes with the call to the agent who now holds it.
                await store.save(session, row.id, agent_id=agent_id)

    async def call_ended(self, tenant_id: str, call_id: str) -> None:
        async with self.kernel.db.transaction() as session:
            await store.upsert_call(session, call_id, tenant_id, ended=True)
            row = await store.open_for_call(session, tenant_id, call_id)
            if row is not None:
                await self._end(session, row, "cancelled", "call_ended")
        self.kernel.relay.notify()

    async def expire_overdue(self, now: datetime | None = None) -> int:
        async with self.kernel.db.transaction() as session:
            rows = await store.overdue(session, now or utcnow())
            for row in rows:
                await self._end(session, row, "expired", "expired")
        if rows:
            self.kernel.relay.notify()
        return len(rows)

    async def outcome(self, payment_id: str, status: str, outcome: dict[str, Any]) -> None:
        async with self.kernel.db.transaction() as session:
            row = await store.get(session, payment_id, lock=True)
            if row is None or row.status != "submitted":
                return  # not ours, or already recorded
            await store.save(session, row.id, status=status, outcome=outcome)

    async def refunded(self, payment_id: str, refunded_total: int, fully: bool) -> None:
        async with self.kernel.db.transaction() as session:
            row = await store.get(session, payment_id, lock=True)
            if row is None or row.status not in ("authorized", "partially_refunded"):
                return
            outcome = {**(row.outcome or {}), "refunded": refunded_total}
            await store.save(
                session,
                row.id,
                outcome=outcome,
                status="refunded" if fully else "partially_refunded",
            )

    async def voided(self, payment_id: str) -> None:
        async with self.kernel.db.transaction() as session:
            row = await store.get(session, payment_id, lock=True)
            if row is not None and row.status == "authorized":
                await store.save(session, row.id, status="voided")
