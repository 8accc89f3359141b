"""Idempotency keys on our API, with Stripe's semantics.

The same key with the same request replays the stored answer; the same key with
another request is a 422; a duplicate arriving while the first is still running
is a 409. The claim on a key commits before the work starts (so a concurrent
duplicate sees it); the answer is stored in the same transaction as the work's
effects (so a stored answer always describes committed effects). A claim left
behind by a crashed process is taken over once it is older than `stale_after`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Column, DateTime, Integer, String, Table, Text, and_, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from transact.contracts import utcnow
from transact.kernel.db import Database, metadata
from transact.kernel.errors import ApiError

idempotency_keys = Table(
    "kernel_idempotency",
    metadata,
    Column("scope", String(64), primary_key=True),
    Column("tenant_id", String(64), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # "pending" or "done"
    Column("response_status", Integer, nullable=True),
    Column("response_body", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

MAX_KEY_LENGTH = 255


def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class Replay:
    status: int
    body: Any


@dataclass(frozen=True)
class Claim:
    scope: str
    tenant_id: str
    key: str

    def _where(self) -> Any:
        t = idempotency_keys.c
        return and_(t.scope == self.scope, t.tenant_id == self.tenant_id, t.key == self.key)

    async def complete(self, session: AsyncSession, status: int, body: Any) -> None:
        """Store the answer, in the transaction that commits the work."""
        await session.execute(
            update(idempotency_keys)
            .where(self._where())
            .values(status="done", response_status=status, response_body=json.dumps(body))
        )

    async def release(self, db: Database) -> None:
        """The work failed and changed nothing: let the key be used again."""
        async with db.transaction() as session:
            await session.execute(
                delete(idempotency_keys).where(
                    self._where(), idempotency_keys.c.status == "pending"
                )
            )


def check_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise ApiError(
            400,
            "invalid_idempotency_key",
            f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable characters",
        )
    return key


async def claim(
    db: Database,
    scope: str,
    tenant_id: str,
    key: str,
    print_: str,
    *,
    stale_after: timedelta = timedelta(minutes=2),
) -> Claim | Replay:
    """Claim `key` for this request, or get the stored answer of its earlier run."""
    key = check_key(key)
    this = Claim(scope, tenant_id, key)
    try:
        async with db.transaction() as session:
            await session.execute(
                idempotency_keys.insert().values(
                    scope=scope,
                    tenant_id=tenant_id,
                    key=key,
                    fingerprint=print_,
                    status="pending",
                    created_at=utcnow(),
                )
            )
        return this
    except IntegrityError:
        pass
    async with db.transaction() as session:
        row = (await session.execute(select(idempotency_keys).where(this._where()))).first()
        if row is None:  # released between our insert and this read: try once more
            return await claim(db, scope, tenant_id, key, print_, stale_after=stale_after)
        if row.fingerprint != print_:
            raise ApiError(
                422,
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request",
            )
        if row.status == "done":
            return Replay(row.response_status, json.loads(row.response_body))
        created = (
            row.created_at
            if row.created_at.tzinfo
            else row.created_at.replace(tzinfo=utcnow().tzinfo)
        )
        if utcnow() - created < stale_after:
            raise ApiError(
                409,
                "idempotency_in_progress",
                "a request with this Idempotency-Key is still being processed",
            )
        # The first run died without finishing: this request takes the claim over.
        await session.execute(
            update(idempotency_keys).where(this._where()).values(created_at=utcnow())
        )
    return this


async def answer_once(
    db: Database,
    scope: str,
    tenant_id: str,
    key: str | None,
    print_: str,
    response: Response,
    work: Callable[[], Awaitable[dict[str, Any]]],
    status: int,
) -> dict[str, Any]:
    """Run `work` for a request that may carry an Idempotency-Key, with Stripe's rules.

    Without a key the work simply runs. With one, a repeat replays the stored answer
    (marked `Idempotent-Replayed: true`) and a failure frees the key for a retry.
    """
    if key is None:
        return await work()
    outcome = await claim(db, scope, tenant_id, key, print_)
    if isinstance(outcome, Replay):
        response.status_code = outcome.status
        response.headers["Idempotent-Replayed"] = "true"
        return dict(outcome.body)
    try:
        answer = await work()
    except Exception:
        await outcome.release(db)
        raise
    async with db.transaction() as session:
        await outcome.complete(session, status, answer)
    return answer
