"""Auth's own tables: tenants, users, API clients, signing keys. No other service reads them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from transact.contracts import utcnow
from transact.kernel.db import metadata

tenants = Table(
    "auth_tenants",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("mfa_required", Boolean, nullable=False),
    Column("mfa_delegated_to_sso", Boolean, nullable=False, default=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

users = Table(
    "auth_users",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("auth_tenants.id"), nullable=False),
    Column("username", String(128), nullable=False),
    Column("password_hash", String(256), nullable=False),
    Column("role", String(16), nullable=False),
    Column("mfa_secret", LargeBinary, nullable=True),  # sealed with the tenant's key
    Column("mfa_enabled", Boolean, nullable=False, default=False),
    Column("totp_last_step", BigInteger, nullable=True),
    Column("recovery_hashes", Text, nullable=False, default="[]"),
    Column("failed_attempts", Integer, nullable=False, default=0),
    Column("locked_until", DateTime(timezone=True), nullable=True),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("tenant_id", "username", name="uq_auth_users_tenant_username"),
)

clients = Table(
    "auth_clients",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("auth_tenants.id"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("secret_hash", String(256), nullable=False),
    Column("scopes", Text, nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

media_tokens = Table(
    "auth_media_tokens",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("auth_tenants.id"), nullable=False),
    Column("token_hash", String(64), nullable=False),  # SHA-256 of a 256-bit random secret
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

signing_keys = Table(
    "auth_signing_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("private_sealed", LargeBinary, nullable=False),
    Column("public_jwk", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("retired_at", DateTime(timezone=True), nullable=True),
)


def as_utc(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything here is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    mfa_required: bool
    mfa_delegated_to_sso: bool


@dataclass(frozen=True)
class User:
    id: str
    tenant_id: str
    username: str
    password_hash: str
    role: str
    mfa_secret: bytes | None
    mfa_enabled: bool
    totp_last_step: int | None
    recovery_hashes: list[str]
    failed_attempts: int
    locked_until: datetime | None
    disabled: bool

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "username": self.username,
            "role": self.role,
            "mfa_enabled": self.mfa_enabled,
            "disabled": self.disabled,
            "locked": self.locked_until is not None and self.locked_until > utcnow(),
        }


@dataclass(frozen=True)
class Client:
    id: str
    tenant_id: str
    name: str
    secret_hash: str
    scopes: list[str]
    disabled: bool


def _tenant(row: Any) -> Tenant:
    return Tenant(row.id, row.name, row.mfa_required, row.mfa_delegated_to_sso)


def _user(row: Any) -> User:
    return User(
        id=row.id,
        tenant_id=row.tenant_id,
        username=row.username,
        password_hash=row.password_hash,
        role=row.role,
        mfa_secret=row.mfa_secret,
        mfa_enabled=row.mfa_enabled,
        totp_last_step=row.totp_last_step,
        recovery_hashes=json.loads(row.recovery_hashes),
        failed_attempts=row.failed_attempts,
        locked_until=as_utc(row.locked_until),
        disabled=row.disabled,
    )


async def tenant_by_name(session: AsyncSession, name: str) -> Tenant | None:
    row = (await session.execute(select(tenants).where(tenants.c.name == name))).first()
    return _tenant(row) if row else None


async def tenant_by_id(session: AsyncSession, tenant_id: str) -> Tenant | None:
    row = (await session.execute(select(tenants).where(tenants.c.id == tenant_id))).first()
    return _tenant(row) if row else None


async def add_tenant(session: AsyncSession, tenant: Tenant) -> None:
    await session.execute(
        tenants.insert().values(
            id=tenant.id,
            name=tenant.name,
            mfa_required=tenant.mfa_required,
            mfa_delegated_to_sso=tenant.mfa_delegated_to_sso,
            created_at=utcnow(),
        )
    )


async def user_by_name(session: AsyncSession, tenant_id: str, username: str) -> User | None:
    row = (
        await session.execute(
            select(users).where(users.c.tenant_id == tenant_id, users.c.username == username)
        )
    ).first()
    return _user(row) if row else None


async def user_by_id(session: AsyncSession, user_id: str) -> User | None:
    row = (await session.execute(select(users).where(users.c.id == user_id))).first()
    return _user(row) if row else None


async def users_of(session: AsyncSession, tenant_id: str) -> list[User]:
    rows = (
        await session.execute(
            select(users).where(users.c.tenant_id == tenant_id).order_by(users.c.username)
        )
    ).all()
    return [_user(r) for r in rows]


async def add_user(
    session: AsyncSession,
    *,
    user_id: str,
    tenant_id: str,
    username: str,
    password_hash: str,
    role: str,
) -> None:
    await session.execute(
        users.insert().values(
            id=user_id,
            tenant_id=tenant_id,
            username=username,
            password_hash=password_hash,
            role=role,
            mfa_enabled=False,
            recovery_hashes="[]",
            failed_attempts=0,
            disabled=False,
            created_at=utcnow(),
        )
    )


async def update_user(session: AsyncSession, user_id: str, **values: Any) -> None:
    if "recovery_hashes" in values:
        values["recovery_hashes"] = json.dumps(values["recovery_hashes"])
    await session.execute(update(users).where(users.c.id == user_id).values(**values))


async def all_tenants(session: AsyncSession) -> list[Tenant]:
    rows = (await session.execute(select(tenants).order_by(tenants.c.name))).all()
    return [_tenant(r) for r in rows]


async def add_media_token(
    session: AsyncSession, token_id: str, tenant_id: str, hashed: str
) -> None:
    await session.execute(
        media_tokens.insert().values(
            id=token_id, tenant_id=tenant_id, token_hash=hashed, created_at=utcnow()
        )
    )


async def revoke_media_tokens(session: AsyncSession, tenant_id: str, except_id: str) -> None:
    await session.execute(
        update(media_tokens)
        .where(
            media_tokens.c.tenant_id == tenant_id,
            media_tokens.c.id != except_id,
            media_tokens.c.revoked_at.is_(None),
        )
        .values(revoked_at=utcnow())
    )


async def active_media_hashes(session: AsyncSession, tenant_id: str) -> list[str]:
    rows = (
        await session.execute(
            select(media_tokens.c.token_hash)
            .where(media_tokens.c.tenant_id == tenant_id, media_tokens.c.revoked_at.is_(None))
            .order_by(media_tokens.c.created_at)
        )
    ).all()
    return [r.token_hash for r in rows]


async def client_by_id(session: AsyncSession, client_id: str) -> Client | None:
    row = (await session.execute(select(clients).where(clients.c.id == client_id))).first()
    if row is None:
        return None
    return Client(
        row.id, row.tenant_id, row.name, row.secret_hash, row.scopes.split(), row.disabled
    )


async def add_client(session: AsyncSession, client: Client) -> None:
    await session.execute(
        clients.insert().values(
            id=client.id,
            tenant_id=client.tenant_id,
            name=client.name,
            secret_hash=client.secret_hash,
            scopes=" ".join(client.scopes),
            disabled=client.disabled,
            created_at=utcnow(),
        )
    )


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_sealed: bytes
    public_jwk: dict[str, Any]
    created_at: datetime
    retired_at: datetime | None


async def signing_keys_all(session: AsyncSession) -> list[SigningKey]:
    rows = (
        await session.execute(select(signing_keys).order_by(signing_keys.c.created_at.desc()))
    ).all()
    return [
        SigningKey(
            r.kid,
            r.private_sealed,
            json.loads(r.public_jwk),
            as_utc(r.created_at) or utcnow(),
            as_utc(r.retired_at),
        )
        for r in rows
    ]


async def add_signing_key(session: AsyncSession, key: SigningKey) -> None:
    await session.execute(
        signing_keys.insert().values(
            kid=key.kid,
            private_sealed=key.private_sealed,
            public_jwk=json.dumps(key.public_jwk),
            created_at=key.created_at,
            retired_at=None,
        )
    )


async def retire_signing_keys(session: AsyncSession, except_kid: str, at: datetime) -> None:
    await session.execute(
        update(signing_keys)
        .where(signing_keys.c.kid != except_kid, signing_keys.c.retired_at.is_(None))
        .values(retired_at=at)
    )
