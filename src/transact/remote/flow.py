"""Remote card capture's use cases: links for agents, the customer's web session, cards
handed to card capture, and the attempts' story told back by capture and the PSP adapter.

Every change is one transaction over the link's row (locked) with its events in the
outbox. Remote never sees a card beyond the moment of a post: it seals the fields for
card capture and lets them go. It talks to other services only over the bus.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlencode

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from transact.contracts import Message, utcnow
from transact.contracts.capture import (
    MAX_HOLDER_LENGTH,
    CaptureCancelRequested,
    CaptureCardPosted,
    CaptureStarted,
    billing_postcode,
    holder_name,
    link_card_context,
)
from transact.contracts.links import (
    LinkCancelled,
    LinkCompleted,
    LinkCreated,
    LinkExpired,
    LinkFailed,
    LinkOpened,
    LinkProgress,
)
from transact.contracts.messages import (
    InvalidDestination,
    MessageSend,
    destination,
    mask,
    message_context,
)
from transact.contracts.money import check_money
from transact.kernel import Kernel, audit
from transact.kernel.db import add_to_outbox
from transact.kernel.errors import ApiError
from transact.kernel.security import Principal
from transact.remote import domain, store
from transact.remote.domain import (
    Attempt,
    AttemptStatus,
    Link,
    LinkError,
    LinkSettings,
    LinkStatus,
    PageState,
    PhoneCapture,
    PhoneStatus,
    Submitter,
)

log = structlog.get_logger("transact.remote")

DESTINATION_CONTEXT = b"remote-link-to:"
WEB_SESSION_LONGEST = timedelta(hours=2)
DEFAULT_MERCHANT = "Your merchant"
_MESSAGE_RANK = {"queued": 0, "sent": 1, "delivered": 2, "failed": 2}
# Capture sessions live an hour at most; a day later nobody turns one into a link.
PHONE_CAPTURE_MEMORY = timedelta(days=1)


@dataclass(frozen=True)
class NewLink:
    amount: int
    currency: str
    reference: str
    channel: str
    to: str | None
    expires_in: int | None


@dataclass(frozen=True)
class FromPhone:
    """A link asked for in place of an open phone capture: the capture's amount, currency
    and reference, which the request may repeat but not change."""

    payment_id: str
    channel: str
    to: str | None
    expires_in: int | None
    amount: int | None = None
    currency: str | None = None
    reference: str | None = None


@dataclass(frozen=True)
class WebSession:
    """A customer's browser on one link: what the session cookie stands for."""

    id: str
    tenant_id: str
    link_id: str
    csrf: str


@dataclass(frozen=True)
class Page:
    link: Link
    attempt: Attempt | None
    settings: LinkSettings
    state: PageState


def api_error(problem: LinkError) -> ApiError:
    return ApiError(problem.status, problem.code, problem.message)


def sees_all(principal: Principal) -> bool:
    return principal.kind == "client" or principal.supervises


def _web_key(session_id: str) -> str:
    # The cache holds a hash: a dump of it opens no customer's page.
    return "remote:web:" + hashlib.sha256(session_id.encode()).hexdigest()


class Remote:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    # --- settings -----------------------------------------------------------------------

    async def settings(self, tenant_id: str) -> LinkSettings:
        async with self.kernel.db.transaction() as session:
            stored = await store.settings_of(session, tenant_id)
        return LinkSettings.from_dict(stored) if stored else LinkSettings()

    async def set_settings(self, principal: Principal, data: dict[str, Any]) -> LinkSettings:
        try:
            settings = LinkSettings.from_dict(data)
        except LinkError as problem:
            raise api_error(problem) from None
        async with self.kernel.db.transaction() as session:
            await store.set_settings(session, principal.tenant_id, settings.to_dict())
            await audit.append(
                session,
                action="remote.settings_changed",
                actor=principal.actor,
                tenant_id=principal.tenant_id,
                target=principal.tenant_id,
                details=settings.to_dict(),
            )
        return settings

    # --- links --------------------------------------------------------------------------

    async def create(
        self,
        principal: Principal,
        new: NewLink,
        base_url: str,
        *,
        source: PhoneCapture | None = None,
    ) -> tuple[Link, str]:
        """A new link, sent on its channel. With `source`, the link takes the place of that
        open phone capture: capture is asked to close it (`capture.cancel_requested`)."""
        to = self._checked(new)
        settings = await self.settings(principal.tenant_id)
        now = utcnow()
        try:
            expires_at = domain.expiry(settings, new.expires_in, now)
        except LinkError as problem:
            raise api_error(problem) from None
        token = secrets.token_urlsafe(domain.TOKEN_BYTES)
        agent_id = principal.id if principal.kind == "user" else None
        if source is not None and source.agent_id is not None:
            agent_id = source.agent_id  # the agent on the call watches the link
        link = Link(
            id="lnk_" + secrets.token_hex(12),
            tenant_id=principal.tenant_id,
            agent_id=agent_id,
            created_by=principal.actor,
            amount=new.amount,
            currency=new.currency,
            reference=domain.check_reference(new.reference),
            channel=new.channel,
            to_masked=mask(new.channel, to) if to else None,
            status=LinkStatus.ACTIVE,
            attempts=0,
            max_attempts=settings.max_attempts,
            expires_at=expires_at,
            created_at=now,
            message_id=None if to is None else "msg_" + secrets.token_hex(12),
            source_payment_id=None if source is None else source.id,
        )
        url = f"{base_url.rstrip('/')}/pay/{token}"
        to_sealed = None if to is None else self._seal_destination(link, to)
        async with self.kernel.db.transaction() as session:
            if source is not None:
                await self._take_phone_capture(session, principal, source.id, link.id)
            await store.insert_link(session, link, domain.token_hash(token), to_sealed)
            events: list[Message] = [
                LinkCreated(
                    tenant_id=link.tenant_id,
                    correlation_id=link.id,
                    link_id=link.id,
                    agent_id=link.agent_id,
                    status=link.status.value,
                    channel=new.channel,  # checked above
                    amount=link.amount,
                    currency=link.currency,
                    reference=link.reference,
                    expires_at=link.expires_at,
                    to_masked=link.to_masked,
                    source_payment_id=link.source_payment_id,
                )
            ]
            if to is not None and link.message_id is not None:
                events.append(self._message(link, link.message_id, to, url, settings))
            if source is not None:
                events.append(
                    CaptureCancelRequested(
                        tenant_id=link.tenant_id,
                        correlation_id=source.id,
                        capture_id=source.id,
                        reason="replaced_by_link",
                        link_id=link.id,
                    )
                )
            await add_to_outbox(session, *events)
            await audit.append(
                session,
                action="link.created",
                actor=principal.actor,
                tenant_id=link.tenant_id,
                target=link.id,
                details={
                    "amount": link.amount,
                    "currency": link.currency,
                    "channel": link.channel,
                    "to": link.to_masked,
                    "expires_at": link.expires_at.isoformat(),
                    **({} if source is None else {"source_payment_id": source.id}),
                },
            )
        self.kernel.relay.notify()
        log.info(
            "remote.link_created",
            link_id=link.id,
            channel=link.channel,
            to=link.to_masked,
            source_payment_id=None if source is None else source.id,
        )
        return link, url

    async def create_from_phone(
        self, principal: Principal, ask: FromPhone, base_url: str
    ) -> tuple[Link, str]:
        """Turn an agent's open phone capture into a link for the same amount and
        reference: 404 for a payment the caller may not see (another agent's, another
        tenant's, or one remote has not heard of), 409 once it is no longer open, 422 for
        a body that names a different sum or reference."""
        async with self.kernel.db.transaction() as session:
            source = await self._phone_capture(session, principal, ask.payment_id)
        try:
            terms = domain.terms_from_phone(source, ask.amount, ask.currency, ask.reference)
        except LinkError as problem:
            raise api_error(problem) from None
        new = NewLink(
            terms.amount, terms.currency, terms.reference, ask.channel, ask.to, ask.expires_in
        )
        return await self.create(principal, new, base_url, source=source)

    async def _phone_capture(
        self, session: AsyncSession, principal: Principal, payment_id: str, *, lock: bool = False
    ) -> PhoneCapture:
        found = await store.phone_capture(session, payment_id[:64], lock=lock)
        if found is None or not principal.may_read(found.tenant_id, found.agent_id):
            raise ApiError(404, "not_found", "no such payment")
        return found

    async def _take_phone_capture(
        self, session: AsyncSession, principal: Principal, payment_id: str, link_id: str
    ) -> None:
        """Bind the phone capture to its link in the link's own transaction, checked again
        under the row's lock: two requests never turn one capture into two links."""
        source = await self._phone_capture(session, principal, payment_id, lock=True)
        try:
            domain.terms_from_phone(source, None, None, None)
        except LinkError as problem:
            raise api_error(problem) from None
        await store.save_phone_capture(session, source.id, link_id=link_id)

    @staticmethod
    def _checked(new: NewLink) -> str | None:
        """The destination in sending form, or a 422 that says what is wrong."""
        problem = check_money(new.amount, new.currency)
        if problem:
            code = "invalid_amount" if "amount" in problem else "invalid_currency"
            raise ApiError(422, code, problem)
        try:
            domain.check_channel(new.channel, new.to)
            domain.check_reference(new.reference)
        except LinkError as refused:
            raise api_error(refused) from None
        if new.to is None:
            return None
        try:
            return destination(new.channel, new.to)
        except InvalidDestination as refused:
            code = "invalid_email" if new.channel == "email" else "invalid_number"
            raise ApiError(422, code, f"to: {refused}", field="to") from None

    def _seal_destination(self, link: Link, to: str) -> str:
        blob = self.kernel.vault.seal(
            link.tenant_id, to.encode(), DESTINATION_CONTEXT + link.id.encode()
        )
        return base64.b64encode(blob).decode()

    def _message(
        self, link: Link, message_id: str, to: str, url: str, settings: LinkSettings
    ) -> MessageSend:
        values = {
            "merchant": settings.merchant_name or DEFAULT_MERCHANT,
            "amount": domain.money(link.amount, link.currency),
            "reference": link.reference,
            "url": url,
            "expires": domain.duration((link.expires_at - utcnow()).total_seconds()),
        }
        payload = json.dumps({"to": to, "values": values}).encode()
        sealed = self.kernel.vault.seal(link.tenant_id, payload, message_context(message_id))
        return MessageSend(
            tenant_id=link.tenant_id,
            correlation_id=link.id,
            message_id=message_id,
            channel=link.channel,  # sms or email here
            to_masked=link.to_masked or "",
            template="payment_link",
            sealed=base64.b64encode(sealed).decode(),
            about=link.id,
            agent_id=link.agent_id,
        )

    async def _mine(self, session: AsyncSession, principal: Principal, link_id: str) -> Link:
        found = await store.link(session, link_id[:64], lock=True)
        if found is None or not principal.may_read(found.tenant_id, found.agent_id):
            raise ApiError(404, "not_found", "no such payment link")
        return found

    async def view(self, principal: Principal, link_id: str) -> tuple[Link, Attempt | None]:
        async with self.kernel.db.transaction() as session:
            found = await self._mine(session, principal, link_id)
            attempt = (
                await store.attempt(session, found.current_attempt)
                if found.current_attempt
                else None
            )
        return found, attempt

    async def links(self, principal: Principal, status: str | None, limit: int) -> list[Link]:
        async with self.kernel.db.transaction() as session:
            return await store.links_of(
                session,
                principal.tenant_id,
                agent_id=None if sees_all(principal) else principal.id,
                status=status,
                limit=limit,
            )

    async def resend(self, principal: Principal, link_id: str, base_url: str) -> tuple[Link, str]:
        """Send the link again under a new token: we keep no token to send twice, and
        the old URL (perhaps in a message that went astray) stops working."""
        settings = await self.settings(principal.tenant_id)
        token = secrets.token_urlsafe(domain.TOKEN_BYTES)
        url = f"{base_url.rstrip('/')}/pay/{token}"
        async with self.kernel.db.transaction() as session:
            link = await self._mine(session, principal, link_id)
            if domain.status_at(link, utcnow()) not in domain.OPEN:
                raise ApiError(409, "link_not_open", f"the link is {link.status.value}")
            values: dict[str, Any] = {"token_hash": domain.token_hash(token)}
            events: list[Message] = []
            if link.channel != "chat":
                sealed = await store.sealed_destination(session, link.id)
                assert sealed is not None
                to = self.kernel.vault.unseal(
                    link.tenant_id, base64.b64decode(sealed), DESTINATION_CONTEXT + link.id.encode()
                ).decode()
                message_id = "msg_" + secrets.token_hex(12)
                events.append(self._message(link, message_id, to, url, settings))
                values |= {"message_id": message_id, "message_status": "queued"}
                values["message_reason"] = None
            await store.save_link(session, link.id, **values)
            await add_to_outbox(session, *events)
            await audit.append(
                session,
                action="link.resent",
                actor=principal.actor,
                tenant_id=link.tenant_id,
                target=link.id,
                details={"channel": link.channel, "to": link.to_masked},
            )
            link = await self._mine(session, principal, link.id)
        self.kernel.relay.notify()
        return link, url

    async def cancel(self, principal: Principal, link_id: str) -> Link:
        async with self.kernel.db.transaction() as session:
            link = await self._mine(session, principal, link_id)
            if link.status is LinkStatus.COMPLETED:
                raise ApiError(409, "already_paid", "the link has been paid; refund the payment")
            if link.open:
                await self._end(session, link, LinkStatus.CANCELLED)
                await audit.append(
                    session,
                    action="link.cancelled",
                    actor=principal.actor,
                    tenant_id=link.tenant_id,
                    target=link.id,
                )
            link = await self._mine(session, principal, link.id)
        self.kernel.relay.notify()
        return link

    async def _end(
        self,
        session: AsyncSession,
        link: Link,
        status: LinkStatus,
        reason: Literal["agent", "replaced"] = "agent",
    ) -> None:
        await store.save_link(session, link.id, status=status)
        facts = {
            "tenant_id": link.tenant_id,
            "correlation_id": link.id,
            "link_id": link.id,
            "agent_id": link.agent_id,
            "status": status.value,
        }
        event: Message
        if status is LinkStatus.CANCELLED:
            event = LinkCancelled(**facts, reason=reason)
        elif status is LinkStatus.EXPIRED:
            event = LinkExpired(**facts)
        else:
            event = LinkFailed(**facts, attempts=link.attempts)
        await add_to_outbox(session, event)

    async def expire_overdue(self, now: datetime | None = None) -> int:
        async with self.kernel.db.transaction() as session:
            overdue = await store.overdue(session, now or utcnow())
            for link in overdue:
                await self._end(session, link, LinkStatus.EXPIRED)
        if overdue:
            self.kernel.relay.notify()
        return len(overdue)

    # --- the customer's web session -----------------------------------------------------

    async def open_page(self, token: str) -> tuple[WebSession, Link]:
        """Exchange a link's token for a web session (first open announces `link.opened`)."""
        if not domain.looks_like_token(token):
            raise LinkError(404, "unknown_link", "This payment link is not valid.")
        now = utcnow()
        async with self.kernel.db.transaction() as session:
            link = await store.link_by_token(session, domain.token_hash(token))
            if link is None:
                raise LinkError(404, "unknown_link", "This payment link is not valid.")
            status = domain.status_at(link, now)
            if status not in domain.OPEN:
                code, message = domain.ENDED[status]
                raise LinkError(410, code, message)
            if link.opened_at is None:
                await store.save_link(session, link.id, status=LinkStatus.OPENED, opened_at=now)
                await add_to_outbox(
                    session,
                    LinkOpened(
                        tenant_id=link.tenant_id,
                        correlation_id=link.id,
                        link_id=link.id,
                        agent_id=link.agent_id,
                        status=LinkStatus.OPENED.value,
                    ),
                )
        self.kernel.relay.notify()
        web = WebSession(
            id=secrets.token_urlsafe(32),
            tenant_id=link.tenant_id,
            link_id=link.id,
            csrf=secrets.token_urlsafe(32),
        )
        lifetime = min(WEB_SESSION_LONGEST, max(timedelta(minutes=5), link.expires_at - now))
        payload = {"tenant_id": web.tenant_id, "link_id": web.link_id, "csrf": web.csrf}
        await self.kernel.cache.set(
            _web_key(web.id), json.dumps(payload).encode(), lifetime.total_seconds()
        )
        return web, link

    async def web_session(self, session_id: str | None) -> WebSession | None:
        if not session_id or len(session_id) > 128:
            return None
        raw = await self.kernel.cache.get(_web_key(session_id))
        if raw is None:
            return None
        data = json.loads(raw)
        return WebSession(session_id, data["tenant_id"], data["link_id"], data["csrf"])

    @staticmethod
    def check_csrf(web: WebSession, given: str | None) -> None:
        if not given or not hmac.compare_digest(given, web.csrf):
            raise LinkError(403, "csrf_failed", "This page has expired. Please reload it.")

    async def page(self, web: WebSession) -> Page:
        settings = await self.settings(web.tenant_id)
        async with self.kernel.db.transaction() as session:
            link = await store.link(session, web.link_id)
            assert link is not None
            attempt = (
                await store.attempt(session, link.current_attempt) if link.current_attempt else None
            )
        return Page(link, attempt, settings, domain.page_state(link, attempt, utcnow()))

    async def post_card(self, web: WebSession, form: Mapping[str, str], ip: str) -> None:
        """Hand a card typed on the page to card capture, sealed; count the attempt."""
        self.check_csrf(web, form.get("csrf"))
        settings = await self.settings(web.tenant_id)
        per_hour = settings.card_posts_per_ip_per_hour
        wait = await self.kernel.cache.take_token(
            f"remote:velocity:{web.tenant_id}:{ip}", per_hour / 3600, per_hour
        )
        if wait > 0:
            log.warning("remote.velocity_limited", link_id=web.link_id)
            raise LinkError(
                429, "too_many_requests", "Too many tries from your network. Please wait a while."
            )
        card = domain.posted_card(form, settings.fields)
        if "postcode" in card:
            # Said at once, like the name: the page's own check can be bypassed, and a
            # refusal from capture would cost the customer an attempt.
            postcode = billing_postcode(card["postcode"])
            if postcode is None:
                raise LinkError(422, "invalid_postcode", domain.POSTCODE_MESSAGE)
            card["postcode"] = postcode
        if settings.ask_name:
            holder = holder_name(form.get("name", "")[: 2 * MAX_HOLDER_LENGTH])
            if holder is None:
                raise LinkError(422, "invalid_name", domain.NAME_MESSAGE)
            card["holder"] = holder
        capture_id = "pay_" + secrets.token_hex(12)
        sealed = self.kernel.vault.seal(
            web.tenant_id, json.dumps(card).encode(), link_card_context(capture_id)
        )
        del card  # the clear fields go no further than this sealed blob
        agent_submits = settings.submitter is Submitter.AGENT
        async with self.kernel.db.transaction() as session:
            link = await store.link(session, web.link_id, lock=True)
            assert link is not None
            current = (
                await store.attempt(session, link.current_attempt) if link.current_attempt else None
            )
            domain.may_post_card(link, current, utcnow())
            await store.insert_attempt(
                session,
                Attempt(
                    capture_id,
                    link.id,
                    link.tenant_id,
                    AttemptStatus.POSTED,
                    agent_submits=agent_submits,
                ),
            )
            await store.save_link(
                session, link.id, attempts=link.attempts + 1, current_attempt=capture_id
            )
            await add_to_outbox(
                session,
                CaptureCardPosted(
                    tenant_id=link.tenant_id,
                    correlation_id=link.id,
                    capture_id=capture_id,
                    link_id=link.id,
                    agent_id=link.agent_id,
                    amount=link.amount,
                    currency=link.currency,
                    reference=link.reference,
                    fields=settings.fields,
                    sealed=base64.b64encode(sealed).decode(),
                    submit=not agent_submits,
                ),
            )
            await audit.append(
                session,
                action="link.card_posted",
                actor=f"link:{link.id}",
                tenant_id=link.tenant_id,
                target=capture_id,
                ip=ip,
                details={"attempt": link.attempts + 1, "link_id": link.id},
            )
        self.kernel.relay.notify()

    async def progress(
        self, web: WebSession, csrf: str | None, field: str, complete: bool, valid: bool | None
    ) -> None:
        """The page's own verdict on one field, for the agent to watch. No card data."""
        self.check_csrf(web, csrf)
        if field not in ("pan", "expiry", "cvv", "postcode"):
            raise LinkError(422, "unknown_field", "field must be pan, expiry, cvv or postcode")
        async with self.kernel.db.transaction() as session:
            link = await store.link(session, web.link_id)
            assert link is not None
            if domain.status_at(link, utcnow()) not in domain.OPEN:
                return
            await add_to_outbox(
                session,
                LinkProgress(
                    tenant_id=link.tenant_id,
                    correlation_id=link.id,
                    link_id=link.id,
                    agent_id=link.agent_id,
                    status=link.status.value,
                    field=field,
                    complete=complete,
                    valid=valid,
                ),
            )
        self.kernel.relay.notify()

    async def challenge_url(self, web: WebSession, return_url: str) -> str | None:
        """Where the bank's check is, with the way back to us; None when none waits."""
        page = await self.page(web)
        if page.state is not PageState.CHALLENGE or page.attempt is None:
            return None
        action = page.attempt.action_url
        assert action is not None
        separator = "&" if "?" in action else "?"
        return f"{action}{separator}{urlencode({'return_url': return_url})}"

    # --- what card capture and the PSP adapter tell -------------------------------------

    async def field_rejected(self, capture_id: str, field: str, reason: str) -> None:
        async with self.kernel.db.transaction() as session:
            attempt = await store.attempt(session, capture_id, lock=True)
            if attempt is None or attempt.errors.get(field) == reason:
                return
            await store.save_attempt(session, capture_id, errors={**attempt.errors, field: reason})

    async def capture_completed(self, capture_id: str) -> None:
        async with self.kernel.db.transaction() as session:
            attempt = await store.attempt(session, capture_id)
        # When the customer pays, `payment.requested` says more; only a card waiting
        # for the agent stops at ready.
        if attempt is not None and attempt.agent_submits:
            await self.advance(capture_id, AttemptStatus.READY)

    async def advance(
        self,
        attempt_id: str,
        new: AttemptStatus,
        *,
        action_url: str | None = None,
        decline_code: str | None = None,
    ) -> None:
        """Move an attempt on, and its link with it when the attempt has ended."""
        async with self.kernel.db.transaction() as session:
            attempt = await store.attempt(session, attempt_id, lock=True)
            if attempt is None or not domain.moves_to(attempt.status, new):
                return  # not a link's capture, a repeat, or an event overtaken by its sequel
            await store.save_attempt(
                session, attempt_id, status=new, action_url=action_url, decline_code=decline_code
            )
            link = await store.link(session, attempt.link_id, lock=True)
            assert link is not None
            next_status = domain.link_after(link, new)
            if next_status is LinkStatus.COMPLETED:
                await store.save_link(
                    session,
                    link.id,
                    status=next_status,
                    completed_at=utcnow(),
                    payment_id=attempt_id,
                )
                await add_to_outbox(
                    session,
                    LinkCompleted(
                        tenant_id=link.tenant_id,
                        correlation_id=link.id,
                        link_id=link.id,
                        agent_id=link.agent_id,
                        status=next_status.value,
                        payment_id=attempt_id,
                    ),
                )
            elif next_status is not None:
                await self._end(session, link, next_status)
        self.kernel.relay.notify()

    async def message_status(self, message_id: str, status: str, reason: str | None) -> None:
        async with self.kernel.db.transaction() as session:
            link = await store.link_by_message(session, message_id)
            if link is None:
                return
            current = _MESSAGE_RANK.get(link.message_status or "queued", 0)
            if _MESSAGE_RANK[status] <= current:
                return  # a late or repeated report never undoes a later one
            await store.save_link(session, link.id, message_status=status, message_reason=reason)

    # --- agents' phone captures, as capture's events tell them ---------------------------

    async def _project_phone(
        self, session: AsyncSession, found: PhoneCapture | None, seen: PhoneCapture
    ) -> PhoneCapture:
        """Record what an event says of a phone capture: its sum when first told, its
        status only forward. The events of different topics come in any order."""
        if found is None:
            try:
                async with session.begin_nested():
                    await store.insert_phone_capture(session, seen)
                return seen
            except IntegrityError:  # another event of the same capture got there first
                found = await store.phone_capture(session, seen.id, lock=True)
                assert found is not None
        values: dict[str, Any] = {}
        if found.amount is None and seen.amount is not None:
            values |= {"amount": seen.amount, "currency": seen.currency}
            values["reference"] = seen.reference
        if found.call_id is None and seen.call_id is not None:
            values["call_id"] = seen.call_id
        if found.agent_id is None and seen.agent_id is not None:
            values["agent_id"] = seen.agent_id
        if domain.phone_moves_to(found.status, seen.status):
            values["status"] = seen.status
        if values:
            await store.save_phone_capture(session, found.id, **values)
        return found

    async def phone_started(self, message: CaptureStarted) -> None:
        if message.channel != "phone" or message.amount is None:
            return  # only agents' phone captures become links
        seen = PhoneCapture(
            id=message.capture_id,
            tenant_id=message.tenant_id,
            call_id=message.call_id,
            agent_id=message.agent_id,
            amount=message.amount,
            currency=message.currency,
            reference=message.reference,
            status=PhoneStatus.CAPTURING,
        )
        async with self.kernel.db.transaction() as session:
            found = await store.phone_capture(session, seen.id, lock=True)
            await self._project_phone(session, found, seen)

    async def phone_ended(
        self, tenant_id: str, capture_id: str, call_id: str | None, agent_id: str, reason: str
    ) -> None:
        seen = PhoneCapture(
            id=capture_id,
            tenant_id=tenant_id,
            call_id=call_id,
            agent_id=agent_id,
            amount=None,
            currency=None,
            reference=None,
            status=domain.phone_status_after_cancel(reason),
        )
        async with self.kernel.db.transaction() as session:
            found = await store.phone_capture(session, capture_id, lock=True)
            await self._project_phone(session, found, seen)

    async def phone_submitted(
        self,
        tenant_id: str,
        capture_id: str,
        agent_id: str | None,
        amount: int,
        currency: str,
        reference: str,
    ) -> None:
        """The phone capture's card went to the PSP. Had the agent just turned it into a
        link (capture got the card before it got our request to close it), the link
        goes: the customer must not be asked to pay twice."""
        seen = PhoneCapture(
            id=capture_id,
            tenant_id=tenant_id,
            call_id=None,
            agent_id=agent_id,
            amount=amount,
            currency=currency,
            reference=reference,
            status=PhoneStatus.SUBMITTED,
        )
        async with self.kernel.db.transaction() as session:
            found = await store.phone_capture(session, capture_id, lock=True)
            known = await self._project_phone(session, found, seen)
            if known.link_id is None:
                return
            link = await store.link(session, known.link_id, lock=True)
            if link is None or not link.open:
                if link is not None and link.status is LinkStatus.COMPLETED:
                    log.warning("remote.paid_twice", link_id=link.id, source_payment_id=capture_id)
                return
            await self._end(session, link, LinkStatus.CANCELLED, reason="replaced")
            await audit.append(
                session,
                action="link.cancelled",
                actor="remote",
                tenant_id=link.tenant_id,
                target=link.id,
                details={"reason": "phone_payment_submitted", "source_payment_id": capture_id},
            )
        self.kernel.relay.notify()

    async def phone_reassigned(self, tenant_id: str, call_id: str, agent_id: str) -> None:
        async with self.kernel.db.transaction() as session:
            await store.reassign_phone_captures(session, tenant_id, call_id, agent_id)

    async def forget_phone_captures(self, now: datetime | None = None) -> int:
        async with self.kernel.db.transaction() as session:
            return await store.forget_phone_captures(
                session, (now or utcnow()) - PHONE_CAPTURE_MEMORY
            )
