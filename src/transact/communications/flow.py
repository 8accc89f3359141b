"""Communications' use cases: accept `message.send`, deliver with retries, follow status.

A message is a row before anything is sent (`first_time` makes a redelivered command
a no-op). Sending happens outside any transaction: a worker claims the row (a lease),
sends, then records the outcome and its event in one transaction. A passing failure
waits (2 s, 4 s, 8 s, ...) and is tried again by the sweep; a final one, or the fifth
failure, is `message.failed`. Only masked destinations reach logs and events.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from transact.communications import channels, domain, store
from transact.communications.domain import Delivery, Result, Status
from transact.contracts import Message, utcnow
from transact.contracts.messages import (
    InvalidDestination,
    MessageDelivered,
    MessageFailed,
    MessageSend,
    MessageSent,
    destination,
    message_context,
)
from transact.kernel import Kernel, audit
from transact.kernel.db import add_to_outbox, first_time
from transact.kernel.errors import ApiError, VaultError
from transact.kernel.security import Principal

log = structlog.get_logger("transact.communications")

SEND_CONSUMER = "communications.send"
SECRETS_CONTEXT = b"communications-secrets"
RENDERED_CONTEXT = b"communications-outbox:"
LEASE = timedelta(seconds=60)
OUTBOX = "outbox"
STATUS_PATH = "/api/v1/communications/sms/{tenant_id}/status"


@dataclass(frozen=True)
class Setup:
    """A tenant's settings with their secrets opened, for one delivery."""

    settings: domain.Settings
    email_password: str | None
    sms_auth_token: str | None


def _b64(blob: bytes) -> str:
    return base64.b64encode(blob).decode()


class Communications:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.http = httpx.AsyncClient()

    async def close(self) -> None:
        await self.http.aclose()

    # --- settings -----------------------------------------------------------------------

    async def setup(self, tenant_id: str) -> Setup:
        async with self.kernel.db.transaction() as session:
            config, sealed = await store.settings_of(session, tenant_id)
        secrets: dict[str, str] = {}
        if sealed:
            opened = self.kernel.vault.unseal(tenant_id, base64.b64decode(sealed), SECRETS_CONTEXT)
            secrets = json.loads(opened)
        return Setup(
            domain.Settings.from_dict(config) if config else domain.Settings(),
            secrets.get("email_password"),
            secrets.get("sms_auth_token"),
        )

    async def set_settings(
        self, principal: Principal, config: dict[str, Any], secrets: dict[str, str]
    ) -> dict[str, Any]:
        try:
            settings = domain.Settings.from_dict(config)
        except domain.SettingsError as problem:
            raise ApiError(422, "invalid_settings", str(problem)) from None
        if settings.sms is not None and not secrets.get("sms_auth_token"):
            raise ApiError(422, "invalid_settings", "sms.auth_token is required for SMS")
        kept = {k: v for k, v in secrets.items() if v}
        sealed = (
            _b64(
                self.kernel.vault.seal(
                    principal.tenant_id, json.dumps(kept).encode(), SECRETS_CONTEXT
                )
            )
            if kept
            else None
        )
        public = settings.to_dict()
        async with self.kernel.db.transaction() as session:
            await store.set_settings(session, principal.tenant_id, public, sealed)
            await audit.append(
                session,
                action="communications.settings_changed",
                actor=principal.actor,
                tenant_id=principal.tenant_id,
                target=principal.tenant_id,
                details={
                    "email": settings.email is not None,
                    "sms": settings.sms is not None,
                    "templates": sorted(settings.templates),
                    "secrets_for": sorted(kept),
                },
            )
        return describe_settings(public, kept)

    async def public_settings(self, tenant_id: str) -> dict[str, Any]:
        setup = await self.setup(tenant_id)
        secrets = {
            "email_password": setup.email_password or "",
            "sms_auth_token": setup.sms_auth_token or "",
        }
        return describe_settings(setup.settings.to_dict(), {k: v for k, v in secrets.items() if v})

    # --- accepting ----------------------------------------------------------------------

    async def accept(self, command: MessageSend) -> None:
        async with self.kernel.db.transaction() as session:
            if not await first_time(session, SEND_CONSUMER, command.id):
                return
            if await store.get(session, command.message_id) is not None:
                return  # the same message asked for twice under two command ids
            await store.insert(
                session,
                id=command.message_id,
                tenant_id=command.tenant_id,
                channel=command.channel,
                to_masked=command.to_masked[:64],
                template=command.template[:32],
                about=command.about,
                agent_id=command.agent_id,
                payload=command.sealed,
            )
        await self.deliver(command.message_id)

    # --- delivering ---------------------------------------------------------------------

    async def deliver_due(self) -> int:
        """Try every message that is due (first tries, retries, abandoned leases)."""
        async with self.kernel.db.transaction() as session:
            ids = await store.due(session, utcnow())
        for message_id in ids:
            await self.deliver(message_id)
        return len(ids)

    async def deliver(self, message_id: str) -> None:
        now = utcnow()
        async with self.kernel.db.transaction() as session:
            if not await store.claim(session, message_id, now, now + LEASE):
                return  # not due, done already, or another worker is on it
            row = await store.get(session, message_id)
        assert row is not None
        try:
            delivery, rendered = await self._send(row)
        except Exception as problem:  # a bug must not keep the lease until it expires
            log.error(
                "communications.send_crashed", message_id=row.id, error=type(problem).__name__
            )
            delivery, rendered = (
                Delivery(Result.RETRY, row.provider or "unknown", reason="internal error"),
                None,
            )
        await self._record(row, delivery, rendered)

    async def _send(self, row: store.Row) -> tuple[Delivery, str | None]:
        """Send one message; the rendered text comes back for the outbox to keep."""
        payload = self._payload(row)
        if payload is None:
            return Delivery(Result.FAILED, "none", reason="the message's details are gone"), None
        to, values = payload
        setup = await self.setup(row.tenant_id)
        try:
            rendered = domain.render(setup.settings, row.template, values)
        except Exception as problem:  # a template the sandbox refuses at render time
            log.warning(
                "communications.render_failed", message_id=row.id, error=type(problem).__name__
            )
            return Delivery(Result.FAILED, "none", reason="the template could not be filled"), None
        if row.channel == "email" and setup.settings.email is not None:
            delivery = await channels.send_email(
                setup.settings.email, setup.email_password, setup.settings.sender, to, rendered
            )
            return delivery, None
        if row.channel == "sms" and setup.settings.sms is not None and setup.sms_auth_token:
            sms = channels.Sms(to, rendered.sms, self._status_callback(row.tenant_id, setup))
            config, token = setup.settings.sms, setup.sms_auth_token
            if row.attempts:
                since = row.created_at
                earlier = await channels.sms_sent_before(self.http, config, token, sms, since)
                if earlier is not None:
                    return earlier, None
            return await channels.send_sms(self.http, config, token, sms), None
        # No provider for this channel: the embedded default keeps it in the outbox.
        text = rendered.sms if row.channel == "sms" else rendered.text
        shown = {"subject": rendered.subject, "text": text, "to": row.to_masked}
        sealed = self.kernel.vault.seal(
            row.tenant_id, json.dumps(shown).encode(), RENDERED_CONTEXT + row.id.encode()
        )
        return Delivery(Result.DELIVERED, OUTBOX, provider_id=row.id), _b64(sealed)

    def _payload(self, row: store.Row) -> tuple[str, dict[str, str]] | None:
        if row.payload is None:
            return None
        try:
            opened = self.kernel.vault.unseal(
                row.tenant_id, base64.b64decode(row.payload), message_context(row.id)
            )
            data = json.loads(opened)
            to = destination(row.channel, str(data["to"]))
            values = {str(k): str(v) for k, v in dict(data["values"]).items()}
        except (VaultError, ValueError, KeyError, TypeError, binascii.Error, InvalidDestination):
            return None
        return to, values

    def _status_callback(self, tenant_id: str, setup: Setup) -> str | None:
        base = (
            setup.settings.sms.status_callback_base if setup.settings.sms else None
        ) or self.kernel.settings.public_url
        if not base:
            return None  # nowhere the provider could reach us: no delivery reports
        return base.rstrip("/") + STATUS_PATH.format(tenant_id=tenant_id)

    async def _record(self, row: store.Row, delivery: Delivery, rendered: str | None) -> None:
        attempts = row.attempts + 1
        outcome = delivery.result
        if outcome is Result.RETRY or outcome is Result.FAILED:
            outcome = domain.after_failure(delivery, attempts)
        facts = {
            "tenant_id": row.tenant_id,
            "correlation_id": row.about,
            "message_id": row.id,
            "channel": row.channel,
            "provider": delivery.provider,
            "to_masked": row.to_masked,
            "template": row.template,
            "about": row.about,
            "agent_id": row.agent_id,
        }
        events: list[Message] = []
        values: dict[str, Any] = {"attempts": attempts, "provider": delivery.provider}
        if outcome is Result.RETRY:
            wait = domain.retry_delay(attempts)
            values |= {"status": Status.QUEUED, "next_attempt_at": utcnow() + wait}
            values["reason"] = (delivery.reason or "")[:200] or None
            log.info(
                "communications.retry_later",
                message_id=row.id,
                to=row.to_masked,
                attempts=attempts,
                wait=wait.total_seconds(),
                reason=delivery.reason,
            )
        elif outcome is Result.FAILED:
            reason = delivery.reason or "it could not be sent"
            values |= {"status": Status.FAILED, "reason": reason[:200], "payload": None}
            values["next_attempt_at"] = None
            events.append(MessageFailed(**facts, reason=reason, attempts=attempts))
            log.warning("communications.failed", message_id=row.id, to=row.to_masked, reason=reason)
        else:
            status = Status.DELIVERED if outcome is Result.DELIVERED else Status.SENT
            values |= {"status": status, "provider_id": delivery.provider_id, "payload": None}
            values |= {"next_attempt_at": None, "reason": None, "rendered": rendered}
            events.append(MessageSent(**facts, attempts=attempts))
            if status is Status.DELIVERED:
                events.append(MessageDelivered(**facts))
            log.info(
                "communications.sent", message_id=row.id, to=row.to_masked, via=delivery.provider
            )
        async with self.kernel.db.transaction() as session:
            await store.save(session, row.id, **values)
            await add_to_outbox(session, *events)
        if events:
            self.kernel.relay.notify()

    # --- delivery reports ---------------------------------------------------------------

    async def sms_status(self, tenant_id: str, params: dict[str, str], signature: str) -> bool:
        """A Twilio status callback; False when its signature does not verify."""
        setup = await self.setup(tenant_id)
        url = self._status_callback(tenant_id, setup)
        if url is None or setup.sms_auth_token is None:
            return False
        if not domain.signature_valid(setup.sms_auth_token, url, params, signature):
            return False
        new = domain.callback_status(params.get("MessageStatus", ""))
        sid = params.get("MessageSid", "")
        if new is None or not sid:
            return True
        async with self.kernel.db.transaction() as session:
            row = await store.by_provider_id(session, sid)
            if row is None or row.tenant_id != tenant_id:
                return True  # not ours (or long gone): nothing to do, nothing to retry
            if not domain.may_become(row.status, new):
                return True
            await self._report(session, row, new, params.get("ErrorCode"))
        self.kernel.relay.notify()
        return True

    async def _report(
        self, session: AsyncSession, row: store.Row, new: Status, error_code: str | None
    ) -> None:
        facts = {
            "tenant_id": row.tenant_id,
            "correlation_id": row.about,
            "message_id": row.id,
            "channel": row.channel,
            "provider": row.provider or "twilio",
            "to_masked": row.to_masked,
            "template": row.template,
            "about": row.about,
            "agent_id": row.agent_id,
        }
        if new is Status.DELIVERED:
            await store.save(session, row.id, status=new)
            await add_to_outbox(session, MessageDelivered(**facts))
            return
        reason = domain.twilio_reason(error_code, "the carrier could not deliver it")
        await store.save(session, row.id, status=new, reason=reason[:200])
        await add_to_outbox(session, MessageFailed(**facts, reason=reason, attempts=row.attempts))
        log.warning("communications.undelivered", message_id=row.id, to=row.to_masked)

    # --- reading ------------------------------------------------------------------------

    async def recent(self, tenant_id: str, limit: int) -> list[store.Row]:
        async with self.kernel.db.transaction() as session:
            return await store.recent(session, tenant_id=tenant_id, provider=None, limit=limit)

    async def outbox(self, limit: int = 50) -> list[dict[str, Any]]:
        """Outbox messages of every tenant with their text opened (the demo page only)."""
        async with self.kernel.db.transaction() as session:
            rows = await store.recent(session, tenant_id=None, provider=OUTBOX, limit=limit)
        shown: list[dict[str, Any]] = []
        for row in rows:
            if row.rendered is None:
                continue
            opened = self.kernel.vault.unseal(
                row.tenant_id,
                base64.b64decode(row.rendered),
                RENDERED_CONTEXT + row.id.encode(),
            )
            shown.append(
                {
                    **json.loads(opened),
                    "id": row.id,
                    "channel": row.channel,
                    "created_at": row.created_at,
                }
            )
        return shown


def describe_settings(public: dict[str, Any], secrets: dict[str, str]) -> dict[str, Any]:
    """Settings as an admin sees them: which secrets are set, never their values."""
    return {
        **public,
        "secrets": {
            "email_password": bool(secrets.get("email_password")),
            "sms_auth_token": bool(secrets.get("sms_auth_token")),
        },
    }
